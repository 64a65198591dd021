import { setTimeout as sleep } from 'node:timers/promises'
import type pg from 'pg'
import { PG, pgErrorCode, withTransaction, withTransactionEndingIn } from '../../src/db/transaction.js'
import { SoldOutError } from '../../src/errors.js'
import { rowStrategy, SALE_STOCK } from '../../src/stock/stock.repository.js'
import { labPool, type Lab, type LabContext } from './lab.js'

// Lab 1, oversell: a purchase that reads the stock, then writes back "what I read, minus one", run by a
// crowd of buyers at once. The lab's own code talks to Postgres directly; the app never runs it.

const BUYERS = 200
const UNITS = 20

/**
 * The broken purchase: no guard anywhere. Two buyers who read the same `available` both write the same
 * new value, so one sale is lost from the count (a lost update) and both get an order; and a buyer who
 * read 0 writes -1. `reserved = reserved + 1` moves the unit, as the real code does.
 */
async function naivePurchase(
  pool: pg.Pool,
  table: string,
  key: string,
  id: number,
  alsoReserve: boolean,
): Promise<void> {
  await withTransaction(pool, async (tx) => {
    const { rows } = await tx.query<{ available: number }>(
      `SELECT available FROM ${table} WHERE ${key} = $1`,
      [id],
    )
    // The app "decides" between the read and the write: any real request spends time here.
    await sleep(1)
    const reserve = alsoReserve ? ', reserved = reserved + 1' : ''
    await tx.query(`UPDATE ${table} SET available = $2${reserve} WHERE ${key} = $1`, [
      id,
      rows[0]!.available - 1,
    ])
    if (table === 'lab_naive_stock')
      await tx.query('INSERT INTO lab_naive_orders (stock_id) VALUES ($1)', [id])
  })
}

/** A fresh sale of `units` units, and its flash_sale_stock row id (the sale id). */
async function freshSale(ctx: LabContext, units: number): Promise<number> {
  const productId = await ctx.admin.loadTestProduct(ctx.target.db)
  const sale = await ctx.admin.createSale({
    productId,
    units,
    perUserLimit: 1,
    priceCents: 999,
    openSeconds: 600,
  })
  return sale.id
}

const crowd = <T>(work: () => Promise<T>) => Promise.allSettled(Array.from({ length: BUYERS }, () => work()))

export const oversell: Lab = {
  name: 'oversell',
  title: 'read-then-write without a guard sells more than it has; the CHECK and the atomic strategy do not',
  async run(ctx) {
    const pool = labPool({ connectionString: ctx.urls.databaseUrl, max: 20 })
    const sales: number[] = []
    try {
      // 1. A stock table with no CHECK at all, and the orders the naive purchase writes.
      await pool.query(
        `CREATE TABLE IF NOT EXISTS lab_naive_stock (id int PRIMARY KEY, available int NOT NULL)`,
      )
      await pool.query(
        `CREATE TABLE IF NOT EXISTS lab_naive_orders (id serial PRIMARY KEY, stock_id int NOT NULL)`,
      )
      await pool.query('TRUNCATE lab_naive_stock, lab_naive_orders')
      await pool.query('INSERT INTO lab_naive_stock (id, available) VALUES (1, $1)', [UNITS])
      await crowd(() => naivePurchase(pool, 'lab_naive_stock', 'id', 1, false))
      const orders = Number((await pool.query('SELECT count(*) AS n FROM lab_naive_orders')).rows[0].n)
      const left = (await pool.query<{ available: number }>('SELECT available FROM lab_naive_stock')).rows[0]!
      const brokenLine =
        `audit (I1): ${UNITS} units, ${BUYERS} buyers -> ${orders} orders, available ${left.available}` +
        ` -> ${orders > UNITS ? `OVERSOLD by ${orders - UNITS}` : 'not oversold'}`

      // 2. The same naive write on flash_sale_stock: the table's CHECKs refuse what would break it.
      const checked = await freshSale(ctx, UNITS)
      sales.push(checked)
      const refused: Record<string, number> = {}
      const outcomes = await crowd(() => naivePurchase(pool, 'flash_sale_stock', 'sale_id', checked, true))
      const tally = (o: PromiseSettledResult<void>) => {
        if (o.status === 'fulfilled') return
        const name =
          pgErrorCode(o.reason) === PG.checkViolation
            ? String((o.reason as { constraint?: string }).constraint)
            : String((o.reason as Error).message)
        refused[name] = (refused[name] ?? 0) + 1
      }
      outcomes.forEach(tally)
      // Late buyers, one at a time: no lost update now, so the last ones read 0 and would write -1.
      for (let late = 0; late < UNITS + 5 && !refused.flash_sale_stock_available_check; late++) {
        outcomes.push(
          ...(await Promise.allSettled([naivePurchase(pool, 'flash_sale_stock', 'sale_id', checked, true)])),
        )
        tally(outcomes.at(-1)!)
      }
      const committed = outcomes.filter((o) => o.status === 'fulfilled').length
      ctx.log(
        `the same naive write on flash_sale_stock: ${committed} committed (of ${UNITS} units); refused: ` +
          Object.entries(refused)
            .map(([name, n]) => `${n} by ${name}`)
            .join(', '),
      )

      // 3. The real atomic strategy: one conditional decrement per buyer, the CHECK as its guard.
      const saleId = await freshSale(ctx, UNITS)
      sales.push(saleId)
      const atomic = rowStrategy('atomic', {
        lockTimeoutMs: 1000,
        retry: { maxAttempts: 1, baseMs: 1, capMs: 1 },
        hooks: { onConflict: () => undefined, onSettled: () => undefined },
      })
      const bought = await crowd(() =>
        atomic.run(SALE_STOCK, () =>
          withTransactionEndingIn(pool, async (tx) => ({
            last: await atomic.reserveLast(tx, SALE_STOCK, [{ id: saleId, quantity: 1 }]),
            result: null,
          })),
        ),
      )
      const sold = bought.filter((o) => o.status === 'fulfilled').length
      const soldOut = bought.filter((o) => o.status === 'rejected' && o.reason instanceof SoldOutError).length
      const row = (
        await pool.query<{ available: number; reserved: number }>(
          'SELECT available, reserved FROM flash_sale_stock WHERE sale_id = $1',
          [saleId],
        )
      ).rows[0]!
      const availableRefusals = refused.flash_sale_stock_available_check ?? 0
      return {
        broken: { line: brokenLine, asExpected: orders > UNITS },
        fixed: {
          line:
            `atomic strategy: ${UNITS} units, ${BUYERS} buyers -> ${sold} reserved, ${soldOut} SOLD_OUT, ` +
            `available ${row.available}, reserved ${row.reserved}; naive write under the CHECKs: ${committed} committed, ` +
            `${availableRefusals} refused by available >= 0`,
          asExpected:
            sold === UNITS &&
            soldOut === BUYERS - UNITS &&
            row.available === 0 &&
            committed <= UNITS &&
            availableRefusals > 0,
        },
      }
    } finally {
      await pool.query('DROP TABLE IF EXISTS lab_naive_stock, lab_naive_orders').catch(() => undefined)
      // The lab's sales hold units no order accounts for: gone, so the verifier of a later lab sees none.
      await pool.query('DELETE FROM flash_sales WHERE id = ANY($1::bigint[])', [sales]).catch(() => undefined)
      await pool.end()
    }
  },
}
