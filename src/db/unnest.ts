/**
 * The parameters of an `unnest($1::a[], $2::b[], ...)`: `row` gives one row's values in the unnest's
 * column order, and each column goes as one array holding that column of every row, in the rows' order.
 * So one statement writes any number of rows in one round trip, with a parameter list that does not
 * change with their number (and can be prepared once). An array has no column count of its own, so
 * `rows` must not be empty: with no rows there is nothing to write, and the caller returns before.
 */
export function unnestColumns<Row>(rows: readonly Row[], row: (one: Row) => unknown[]): unknown[][] {
  if (rows.length === 0) throw new Error('unnestColumns needs at least one row')
  const values = rows.map((one) => row(one))
  return values[0]!.map((_, column) => values.map((one) => one[column]))
}
