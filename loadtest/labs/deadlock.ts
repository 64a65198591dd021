import { setTimeout as sleep } from 'node:timers/promises'
import type pg from 'pg'
import { PG, pgErrorCode, withTransaction } from '../../src/db/transaction.js'
import { inKeyOrder, type StockLine } from '../../src/stock/stock.repository.js'
import { labPool, type Lab } from './lab.js'

// Lab 2, deadlock: two checkouts whose carts hold the same two products, listed in opposite order. Each
// locks its first row, pauses (the app doing its work), then wants the other's row. The lab's own code
// runs the transactions; the fix is the real key ordering of src/stock/stock.repository.ts.

/** One checkout: a no-op update of each stock row (it takes the row lock), in the order given. */
async function checkout(pool: pg.Pool, lines: StockLine[]): Promise<void> {
  await withTransaction(pool, async (tx) => {
    for (const [n, line] of lines.entries()) {
      if (n > 0) await sleep(50)
      await tx.query('UPDATE inventory SET version = version + 1 WHERE product_id = $1', [line.id])
    }
  })
}

/** `rounds` times two checkouts at once, [A, B] against [B, A]; counts the ones Postgres aborted. */
async function race(
  pool: pg.Pool,
  a: number,
  b: number,
  rounds: number,
  order: (l: StockLine[]) => StockLine[],
) {
  let deadlocks = 0
  let committed = 0
  let detail = ''
  for (let round = 0; round < rounds; round++) {
    const carts = [
      [
        { id: a, quantity: 1 },
        { id: b, quantity: 1 },
      ],
      [
        { id: b, quantity: 1 },
        { id: a, quantity: 1 },
      ],
    ]
    for (const outcome of await Promise.allSettled(carts.map((cart) => checkout(pool, order(cart))))) {
      if (outcome.status === 'fulfilled') committed++
      else if (pgErrorCode(outcome.reason) === PG.deadlockDetected) {
        deadlocks++
        detail ||= `${(outcome.reason as Error).message}: ${(outcome.reason as { detail?: string }).detail ?? ''}`
      } else throw outcome.reason
    }
  }
  return { deadlocks, committed, detail }
}

export const deadlock: Lab = {
  name: 'deadlock',
  title: 'two checkouts lock the same two rows in opposite order and deadlock; key order does not',
  async run(ctx) {
    const rounds = ctx.quick ? 4 : 10
    const pool = labPool({ connectionString: ctx.urls.databaseUrl, max: 4 })
    try {
      const ids = (
        await pool.query<{ id: number }>('SELECT product_id AS id FROM inventory ORDER BY 1 LIMIT 2')
      ).rows
      if (ids.length < 2)
        throw new Error('the lab needs two products with stock rows: was the database seeded?')
      const [a, b] = [ids[0]!.id, ids[1]!.id]
      const line = (what: string, r: { deadlocks: number; committed: number }) =>
        `${what}: ${rounds} rounds of [${a}, ${b}] vs [${b}, ${a}] -> ${r.deadlocks} deadlocks (40P01), ${r.committed} of ${rounds * 2} committed`
      const asGiven = await race(pool, a, b, rounds, (lines) => lines)
      if (asGiven.detail) ctx.log(`postgres said: ${asGiven.detail.replace(/\s+/g, ' ')}`)
      const ordered = await race(pool, a, b, rounds, inKeyOrder)
      return {
        broken: { line: line('rows in cart order', asGiven), asExpected: asGiven.deadlocks > 0 },
        fixed: {
          line: line('rows in key order (inKeyOrder)', ordered),
          asExpected: ordered.deadlocks === 0 && ordered.committed === rounds * 2,
        },
      }
    } finally {
      await pool.end()
    }
  },
}
