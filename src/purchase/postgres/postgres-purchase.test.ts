import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, newAdmin, newCustomer, newSale, type TestUser } from '../../../test/support/app.js'
import { createPool } from '../../db/pool.js'
import { rowStrategy, type RowStrategyName } from '../../stock/stock.repository.js'
import { retryPolicyOf } from '../../stock/stock-retry.js'
import { createPostgresPurchasePath } from './postgres-purchase-path.js'

interface Answer {
  status: number
  code: string | undefined
  id: string | undefined
  replayed: boolean
}

async function buy(
  app: FastifyInstance,
  user: TestUser,
  saleId: number,
  options: { key?: string; quantity?: number } = {},
): Promise<Answer> {
  const response = await app.inject({
    method: 'POST',
    url: `/api/sales/${saleId}/purchase`,
    headers: { ...user.headers, ...(options.key ? { 'idempotency-key': options.key } : {}) },
    payload: { quantity: options.quantity ?? 1 },
  })
  const body = response.json<{ code?: string; id?: string }>()
  return {
    status: response.statusCode,
    code: body.code,
    id: body.id,
    replayed: response.headers['idempotent-replayed'] === 'true',
  }
}

async function saleRows(app: FastifyInstance, saleId: number) {
  const { rows } = await app.db.primary.query<{ available: number; reserved: number }>(
    'SELECT available, reserved FROM flash_sale_stock WHERE sale_id = $1',
    [saleId],
  )
  const orders = await app.db.primary.query<{ user_id: string; units: number }>(
    `SELECT o.user_id, sum(i.quantity)::int AS units FROM orders o JOIN order_items i ON i.order_id = o.id
      WHERE o.sale_id = $1 GROUP BY o.user_id`,
    [saleId],
  )
  return { stock: rows[0]!, unitsByUser: orders.rows }
}

const forgetInRedis = (app: FastifyInstance, user: TestUser, key: string) =>
  app.redis.del(`idem:{${user.id}}:${key}`)

describe.each<RowStrategyName>(['atomic', 'optimistic', 'pessimistic'])(
  'the Postgres path, %s',
  (strategy) => {
    let app: FastifyInstance
    let admin: TestUser

    beforeAll(async () => {
      app = await buildTestApp({ STOCK_STRATEGY: strategy, RATE_LIMIT_USER_PER_SECOND: '1000' })
      admin = await newAdmin(app)
    })
    afterAll(async () => {
      await app.close()
    })

    it('when buyers buy, retry, reuse a key, pass the limit, find it sold out, not open or missing, then each hears its own answer', async () => {
      const saleId = await newSale(app, admin, { units: 3, perUserLimit: 2 })
      const [first, second, late] = await Promise.all([newCustomer(app), newCustomer(app), newCustomer(app)])
      const key = randomUUID()

      const created = await buy(app, first, saleId, { key })
      expect(created).toMatchObject({ status: 201, replayed: false })
      expect(await buy(app, first, saleId, { key })).toEqual({ ...created, replayed: true })
      // Redis forgot the key: Postgres' saved answer still tells a different request from a retry.
      await forgetInRedis(app, first, key)
      expect(await buy(app, first, saleId, { key, quantity: 2 })).toMatchObject({
        status: 422,
        code: 'IDEMPOTENCY_KEY_REUSED',
      })
      expect(await buy(app, first, saleId, { quantity: 2 })).toMatchObject({
        status: 409,
        code: 'PER_USER_LIMIT',
      })
      expect(await buy(app, second, saleId, { quantity: 2 })).toMatchObject({ status: 201 })
      expect(await buy(app, late, saleId)).toMatchObject({ status: 409, code: 'SOLD_OUT' })

      const upcoming = await newSale(app, admin, { units: 3, startsInMs: 3600_000 })
      expect(await buy(app, late, upcoming)).toMatchObject({ status: 409, code: 'SALE_NOT_ACTIVE' })
      expect(await buy(app, late, 2_000_000_000)).toMatchObject({ status: 404, code: 'NOT_FOUND' })

      expect(await saleRows(app, saleId)).toEqual({
        stock: { available: 0, reserved: 3 },
        unitsByUser: expect.arrayContaining([
          { user_id: first.id, units: 1 },
          { user_id: second.id, units: 2 },
        ]) as unknown,
      })
    })

    it('when 50 purchases race for 10 units (10 buyers sending two each), then exactly 10 orders exist, available never drops below 0 and nobody passes the limit', async () => {
      const saleId = await newSale(app, admin, { units: 10, perUserLimit: 1 })
      const buyers = await Promise.all(Array.from({ length: 40 }, () => newCustomer(app)))
      const requests = [...buyers, ...buyers.slice(0, 10)]

      const answers = await Promise.all(requests.map((buyer) => buy(app, buyer, saleId)))

      expect(answers.filter((a) => a.status >= 500)).toEqual([])
      expect(answers.filter((a) => a.status === 201)).toHaveLength(10)
      expect(
        answers.every(
          (a) => a.status === 201 || (a.status === 409 && ['SOLD_OUT', 'PER_USER_LIMIT'].includes(a.code!)),
        ),
      ).toBe(true)
      // A CHECK violation (available < 0) would have been a 5xx above; the rows say the same.
      const { stock, unitsByUser } = await saleRows(app, saleId)
      expect(stock).toEqual({ available: 0, reserved: 10 })
      expect(unitsByUser).toHaveLength(10)
      expect(unitsByUser.every((u) => u.units === 1)).toBe(true)
    })

    it('when Redis forgot the key of the purchase that took the last unit, then the retry replays 201 and the same order, not SOLD_OUT', async () => {
      const saleId = await newSale(app, admin, { units: 1 })
      const buyer = await newCustomer(app)
      const key = randomUUID()
      const first = await buy(app, buyer, saleId, { key })
      expect(first.status).toBe(201)
      await forgetInRedis(app, buyer, key)

      expect(await buy(app, buyer, saleId, { key })).toEqual({ ...first, replayed: true })
      // Again, now that this worker remembers the sale is sold out: the memo does not hide the order.
      expect(await buy(app, await newCustomer(app), saleId)).toMatchObject({ status: 409, code: 'SOLD_OUT' })
      await forgetInRedis(app, buyer, key)
      expect(await buy(app, buyer, saleId, { key })).toEqual({ ...first, replayed: true })
    })

    it('when one purchase is made, then it costs the Postgres round trips this strategy is built for, and none once sold out', async () => {
      let queries = 0
      const primary = createPool(app.config.DATABASE_URL, 2, app.config, 'round-trips', () => queries++)
      try {
        const rows = rowStrategy(strategy, {
          lockTimeoutMs: app.config.STOCK_LOCK_TIMEOUT_MS,
          retry: retryPolicyOf(app.config),
          hooks: { onConflict: () => {}, onSettled: () => {} },
        })
        const path = createPostgresPurchasePath({ db: { ...app.db, primary }, rows, config: app.config })
        const saleId = await newSale(app, admin, { units: 2 })
        const [first, buyer, late] = [await newCustomer(app), await newCustomer(app), await newCustomer(app)]
        // The path's first purchase of a sale also reads the sale's terms, once per worker.
        await path.purchase({ userId: first.id, saleId, quantity: 1, idempotency: null })
        const warm = queries
        const idempotency = {
          userId: buyer.id,
          key: randomUUID(),
          method: 'POST',
          path: '/x',
          requestHash: 'h',
        }

        await path.purchase({ userId: buyer.id, saleId, quantity: 1, idempotency })
        const bought = queries - warm
        await expect(
          path.purchase({ userId: late.id, saleId, quantity: 1, idempotency: null }),
        ).rejects.toMatchObject({
          code: 'SOLD_OUT',
        })
        const soldOut = queries - warm - bought
        await expect(
          path.purchase({ userId: late.id, saleId, quantity: 1, idempotency: null }),
        ).rejects.toMatchObject({
          code: 'SOLD_OUT',
        })
        const remembered = queries - warm - bought - soldOut

        // atomic: the one statement. pessimistic: BEGIN, the statement, lock-and-read, UPDATE + COMMIT.
        // optimistic: BEGIN, the statement, the version read, the guarded UPDATE, COMMIT.
        // Sold out: the statement (with BEGIN and ROLLBACK around it but on atomic); then the memo.
        expect({ bought, soldOut, remembered }).toEqual({
          bought: { atomic: 1, optimistic: 5, pessimistic: 4 }[strategy],
          soldOut: strategy === 'atomic' ? 1 : 3,
          remembered: 0,
        })
      } finally {
        await primary.end()
      }
    })
  },
)

describe('the atomic purchase behind a held stock row', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp({ STOCK_STRATEGY: 'atomic', RESERVATION_TTL_SECONDS: '2' })
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await app.close()
  })

  it('when the statement waited for the stock row past half the reservation time, then the buyer hears 503 and no order is made; once the row is free, the next purchase gets a whole reservation', async () => {
    const saleId = await newSale(app, admin, { units: 5 })
    const buyer = await newCustomer(app)
    const holder = await app.db.primary.connect()
    try {
      await holder.query('BEGIN')
      await holder.query('SELECT 1 FROM flash_sale_stock WHERE sale_id = $1 FOR UPDATE', [saleId])
      const { rows: holderRows } = await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
      const answer = buy(app, buyer, saleId, { key: randomUUID() })
      // The purchase waits at its last step, the stock row; hold it past half of the 2 s reservation.
      // Asked outside the holder's transaction (inside it, pg_stat_activity is a snapshot that never
      // changes), and only for a session the holder blocks: other test files share the database.
      for (let waiting = 0; waiting === 0;) {
        const { rows } = await app.db.primary.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE '%WITH clock AS (%'`,
          [holderRows[0]!.pid],
        )
        waiting = rows[0]!.n
      }
      await new Promise((resolve) => setTimeout(resolve, 1200))
      await holder.query('COMMIT')
      expect(await answer).toMatchObject({ status: 503, code: 'SALE_UNAVAILABLE' })
    } finally {
      holder.release()
    }
    expect((await saleRows(app, saleId)).unitsByUser).toEqual([])
    expect(await buy(app, buyer, saleId)).toMatchObject({ status: 201 })
  })
})
