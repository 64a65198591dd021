import { describe, expect, it } from 'vitest'
import { unnestColumns } from './unnest.js'

describe('unnestColumns', () => {
  it('when rows are given, then each column comes back as one array in the rows’ order', () => {
    const rows = [
      { sku: 'A', stock: 1 },
      { sku: 'B', stock: 2 },
      { sku: 'C', stock: 3 },
    ]
    expect(unnestColumns(rows, (r) => [r.sku, r.stock])).toEqual([
      ['A', 'B', 'C'],
      [1, 2, 3],
    ])
  })

  it('when there is no row, then it throws: an unnest needs one array per column, and no rows give no column count', () => {
    expect(() => unnestColumns([], () => [1, 2])).toThrow(/at least one row/)
  })
})
