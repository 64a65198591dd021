import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { buildTestApp, newAdmin, newSale, type TestUser } from '../../test/support/app.js'
import { purchase } from '../../test/support/purchase.js'
import { createLoadTestUsers } from '../auth/load-test-users.js'
import { findSale } from '../sales/sales.repository.js'
import { writeSaleOrders } from './sale-orders.repository.js'
import { rebuildGateFromPostgres } from './gate/gate-rebuild.js'
import { createReconciler } from './gate/reconciler.js'
import { createStockGate } from './gate/stock-gate.js'

// A worker (or the jobs process) whose clock is off: every decision about time is taken on Postgres'
// clock or Redis' (TIME), never on the process's own. Here the process's clock is shifted with fake
// timers (Date only; timers stay real); the fault campaign's `clocks` case does it with faketime.

const RESERVATION_TTL_SECONDS = 60

// Every test's shifted clock ends with it.
afterEach(() => {
  vi.useRealTimers()
})

/** This process's clock, `ms` away from the real one, until the test ends. */
function shiftClock(ms: number) {
  const real = Date.now()
  vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true })
  vi.setSystemTime(real + ms)
}

/** Postgres' clock now, in ms since the epoch. */
async function postgresNow(app: FastifyInstance): Promise<number> {
  const { rows } = await app.db.primary.query<{ now: Date }>('SELECT clock_timestamp() AS now')
  return rows[0]!.now.getTime()
}

describe.each(['redis-gate', 'atomic'] as const)('a %s worker whose clock is off', (strategy) => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp({
      STOCK_STRATEGY: strategy,
      RESERVATION_TTL_SECONDS: String(RESERVATION_TTL_SECONDS),
    })
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await app.close()
  })

  it('when its clock is 300 s ahead and a sale starts in a minute, then a purchase is refused as not started', async () => {
    const saleId = await newSale(app, admin, { units: 5, startsInMs: 60_000 })
    const [buyer] = await createLoadTestUsers(app.db.primary, app.config, 1)

    shiftClock(300_000)
    const answer = await purchase(app, buyer!, saleId)

    expect(answer.statusCode).toBe(409)
    expect(answer.json<{ code: string }>().code).toBe('SALE_NOT_ACTIVE')
  })

  it('when its clock is 20 s behind, then a 201 order expires the whole reservation time after Postgres wrote it', async () => {
    const saleId = await newSale(app, admin, { units: 5 })
    const [buyer] = await createLoadTestUsers(app.db.primary, app.config, 1)

    shiftClock(-20_000)
    const before = await postgresNow(app)
    const answer = await purchase(app, buyer!, saleId)
    const after = await postgresNow(app)

    expect(answer.statusCode).toBe(201)
    const expiresAt = Date.parse(answer.json<{ expiresAt: string }>().expiresAt)
    expect(expiresAt).toBeGreaterThanOrEqual(before + RESERVATION_TTL_SECONDS * 1000 - 1)
    expect(expiresAt).toBeLessThanOrEqual(after + RESERVATION_TTL_SECONDS * 1000)
    // The order row and the answer carry the same time.
    const { rows } = await app.db.primary.query<{ expires_at: Date }>(
      'SELECT expires_at FROM orders WHERE id = $1',
      [answer.json<{ id: string }>().id],
    )
    expect(rows[0]!.expires_at.getTime()).toBe(expiresAt)
  })

  it('when its clock is 300 s ahead, then a buyer pays a reservation made a moment ago', async () => {
    const saleId = await newSale(app, admin, { units: 5 })
    const [buyer] = await createLoadTestUsers(app.db.primary, app.config, 1)
    const bought = await purchase(app, buyer!, saleId)
    expect(bought.statusCode).toBe(201)

    shiftClock(300_000)
    const paid = await app.inject({
      method: 'POST',
      url: `/api/orders/${bought.json<{ id: string }>().id}/pay`,
      headers: { authorization: `Bearer ${buyer!.token}` },
    })

    expect(paid.statusCode).toBe(200)
    expect(paid.json<{ status: string }>().status).toBe('paid')
  })
})

describe('the gate, asked by processes whose clocks are off', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp({ STOCK_STRATEGY: 'redis-gate' })
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await app.close()
  })

  it('when a worker 300 s ahead asks for a sale that starts in a minute, or one 20 s behind for a sale that ended 5 s ago, then the gate refuses both', async () => {
    const gate = createStockGate(app.redis, { tokenTtlMs: 30_000 })
    const upcoming = await newSale(app, admin, { units: 5, startsInMs: 60_000 })
    const ended = await newSale(app, admin, { units: 5 })
    await app.db.primary.query(
      `UPDATE flash_sales SET starts_at = now() - interval '60 seconds', ends_at = now() - interval '5 seconds'
        WHERE id = $1`,
      [ended],
    )
    for (const saleId of [upcoming, ended]) {
      await app.redis.del(`sale:{${saleId}}:gate`)
      await rebuildGateFromPostgres(app.db.primary, gate, saleId)
    }

    shiftClock(300_000)
    const early = await gate.admit(upcoming, 'b1b1b1b1-0000-4000-8000-000000000002', 1)
    shiftClock(-20_000)
    const late = await gate.admit(ended, 'b1b1b1b1-0000-4000-8000-000000000003', 1)

    expect(early.outcome).toBe('not_started')
    expect(late.outcome).toBe('ended')
  })

  it('when a worker admitted a buyer a moment ago and the jobs process runs 300 s ahead, then the reconciler leaves the live token alone', async () => {
    const saleId = await newSale(app, admin, { units: 5 })
    const gate = createStockGate(app.redis, { tokenTtlMs: 30_000 })
    await rebuildGateFromPostgres(app.db.primary, gate, saleId)
    const admitted = await gate.admit(saleId, 'b1b1b1b1-0000-4000-8000-000000000001', 1)
    expect(admitted.outcome).toBe('admitted')

    shiftClock(300_000)
    const result = await createReconciler({ db: app.db, gate, metrics: app.metrics }).reconcileSale(saleId)

    expect(result.released).toBe(0)
    expect(await gate.unitsInFlight(saleId)).toBe(1)
  })
})

describe('an admin on a worker whose clock is off', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp()
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await app.close()
  })

  it('when the worker is 300 s ahead, then a sale that ends in a minute can still be created, and one that ended cannot', async () => {
    shiftClock(300_000)
    const ends = await newSale(app, admin, { units: 1, startsInMs: -300_000 + 1000, durationMs: 60_000 })
    expect(ends).toBeGreaterThan(0)
    await expect(newSale(app, admin, { units: 1, startsInMs: -400_000, durationMs: 60_000 })).rejects.toThrow(
      /INVALID_SALE_WINDOW/,
    )
  })
})

describe('the sale window, judged when an order is written', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp({ STOCK_STRATEGY: 'redis-gate' })
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await app.close()
  })

  it("when a batch's transaction began before the sale ended and writes after its end, then no order is made", async () => {
    const saleId = await newSale(app, admin, { units: 5, startsInMs: -1000, durationMs: 2000 })
    const [buyer] = await createLoadTestUsers(app.db.primary, app.config, 1)
    const sale = (await findSale(app.db.primary, saleId))!
    const tx = await app.db.primary.connect()
    try {
      await tx.query('BEGIN')
      await tx.query('SELECT now()') // the transaction's now(): before the end
      await new Promise((resolve) => setTimeout(resolve, sale.endsAt.getTime() - Date.now() + 200))
      const answers = await writeSaleOrders(
        tx,
        sale,
        [
          {
            orderId: randomUUID(),
            userId: buyer!.id,
            quantity: 1,
            idempotency: null,
            reservationToken: null,
          },
        ],
        { ttlSeconds: 60, stock: 'check' },
      )
      await tx.query('ROLLBACK')
      expect([...answers.values()][0]).toMatchObject({ error: { code: 'SALE_NOT_ACTIVE' } })
    } finally {
      tx.release()
    }
  })
})
