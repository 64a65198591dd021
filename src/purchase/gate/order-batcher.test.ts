import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditOf, buildTestApp, newAdmin, newSale, type TestUser } from '../../../test/support/app.js'
import { loseNextCommit, type LostCommit } from '../../../test/support/lost-commit.js'
import { purchase } from '../../../test/support/purchase.js'
import { waitFor } from '../../../scripts/stack/process.js'
import { createLoadTestUsers } from '../../auth/load-test-users.js'
import { findSale } from '../../sales/sales.repository.js'
import { decrementsReturningVersion, SALE_STOCK } from '../../stock/stock.repository.js'
import { writeSaleOrders } from '../sale-orders.repository.js'
import { createOrderBatcher, type OrderBatcher } from './order-batcher.js'
import { createReconciler } from './reconciler.js'
import { createStockGate, type StockGate } from './stock-gate.js'
import { blockedSessions } from '../../../test/support/locks.js'

async function batches(app: FastifyInstance, outcome: string): Promise<number> {
  const metric = await app.metrics.orderBatches.get()
  return metric.values.filter((v) => v.labels.outcome === outcome).reduce((sum, v) => sum + v.value, 0)
}
const splitBatches = (app: FastifyInstance) => batches(app, 'split')

/**
 * Each buyer is admitted by the gate for one unit and handed to the batcher; every answer, settled, and
 * the batches' Redis confirms too (they follow the answers).
 */
async function admitAndSubmit(gate: StockGate, batcher: OrderBatcher, saleId: number, userIds: string[]) {
  const answers = await Promise.allSettled(
    userIds.map(async (userId) => {
      const admission = await gate.admit(saleId, userId, 1)
      if (admission.outcome !== 'admitted') throw new Error(`not admitted: ${admission.outcome}`)
      return batcher.submit({ saleId, userId, quantity: 1, token: admission.token, idempotency: null })
    }),
  )
  await batcher.flush()
  return answers
}

/** A 10-unit sale with 3 orders written, their tokens confirmed and the gate agreeing with Postgres. */
const THREE_OF_TEN_SETTLED = {
  available: 7,
  reserved: 3,
  ordersReserved: 3,
  gate: 7,
  inFlight: 0,
  drift: 0,
  violations: [],
}

// The batcher against real Postgres and Redis: the gate admits, the batcher writes.
describe('order batcher', () => {
  let app: FastifyInstance
  let admin: TestUser
  // A second connection to the primary, to watch a COMMIT whose answer the test cuts off.
  let observer: pg.Pool

  beforeAll(async () => {
    app = await buildTestApp({ STOCK_STRATEGY: 'redis-gate' })
    admin = await newAdmin(app)
    observer = new pg.Pool({ connectionString: app.config.DATABASE_URL, max: 1 })
  })
  afterAll(async () => {
    await observer.end()
    await app.close()
  })

  /** A long wait and a large batch: every buyer submitted at once lands in one transaction. */
  const newBatcher = (gate: StockGate, db = app.db, statementTimeoutMs = 5000) =>
    createOrderBatcher({
      db,
      gate,
      metrics: app.metrics,
      log: { warn: () => {} },
      reservationTtlSeconds: 600,
      maxBatch: 128,
      maxWaitMs: 50,
      maxConcurrent: 1,
      statementTimeoutMs,
    })

  it('when one buyer in a batch has no user row, the other 40 get their orders, that buyer gets 401 and its unit goes back to the gate once', async () => {
    const saleId = await newSale(app, admin, { units: 50 })
    const honest = await createLoadTestUsers(app.db.primary, app.config, 40)
    const gate = createStockGate(app.redis, { tokenTtlMs: 30_000 })
    // A long wait and a large batch: all 41 buyers land in one transaction.
    const batcher = newBatcher(gate)
    const splitsBefore = await splitBatches(app)
    const buyers = [
      ...honest.slice(0, 20).map((u) => u.id),
      randomUUID(),
      ...honest.slice(20).map((u) => u.id),
    ]

    const answers = await admitAndSubmit(gate, batcher, saleId, buyers)

    const refused = answers.filter((a) => a.status === 'rejected')
    expect(answers.filter((a) => a.status === 'fulfilled')).toHaveLength(40)
    expect(refused).toHaveLength(1)
    expect((refused[0] as PromiseRejectedResult).reason).toMatchObject({
      statusCode: 401,
      code: 'UNAUTHORIZED',
    })
    expect(await splitBatches(app)).toBeGreaterThan(splitsBefore)
    // gate 10 with nothing in flight and drift 0: the refused buyer's unit went back, exactly once.
    expect(await auditOf(app, admin, saleId)).toMatchObject({
      available: 10,
      reserved: 40,
      ordersReserved: 40,
      gate: 10,
      inFlight: 0,
      drift: 0,
      violations: [],
    })
    const { rows } = await app.db.primary.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM orders WHERE sale_id = $1',
      [saleId],
    )
    expect(rows[0]!.n).toBe(40)
  })

  it('when buyers of three sales land in one batch, then one transaction writes all their orders, each sale row takes its own sum, and each gate has nothing in flight and drift 0', async () => {
    const saleIds = [
      await newSale(app, admin, { units: 10 }),
      await newSale(app, admin, { units: 10 }),
      await newSale(app, admin, { units: 10 }),
    ]
    const buyers = await createLoadTestUsers(app.db.primary, app.config, 9)
    const gate = createStockGate(app.redis, { tokenTtlMs: 30_000 })
    const batcher = newBatcher(gate)
    const committedBefore = await batches(app, 'committed')

    const answers = await Promise.all(
      saleIds.map((saleId, i) =>
        admitAndSubmit(
          gate,
          batcher,
          saleId,
          buyers.slice(i * 3, i * 3 + 3).map((u) => u.id),
        ),
      ),
    )

    expect(answers.flat().every((a) => a.status === 'fulfilled')).toBe(true)
    expect((await batches(app, 'committed')) - committedBefore).toBe(1)
    for (const saleId of saleIds) {
      expect(await auditOf(app, admin, saleId)).toMatchObject(THREE_OF_TEN_SETTLED)
    }
  })

  it('when the first lookup of a sale fails (a Postgres blip), then that batch hears 503 and the next buyer of the sale gets its order: the worker keeps no failure', async () => {
    const saleId = await newSale(app, admin, { units: 10 })
    const [first, second] = await createLoadTestUsers(app.db.primary, app.config, 2)
    const gate = createStockGate(app.redis, { tokenTtlMs: 30_000 })
    // The primary as the batcher sees it: its first query (the sale's lookup) fails, as in a blip.
    let blips = 1
    const primary = new Proxy(app.db.primary, {
      get(pool, property, receiver) {
        if (property === 'query' && blips > 0) {
          blips--
          return () => Promise.reject(new Error('connection terminated unexpectedly'))
        }
        const value: unknown = Reflect.get(pool, property, receiver)
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(pool) : value
      },
    })
    const batcher = newBatcher(gate, { ...app.db, primary })

    const [during] = await admitAndSubmit(gate, batcher, saleId, [first!.id])
    const [after] = await admitAndSubmit(gate, batcher, saleId, [second!.id])

    expect((during as PromiseRejectedResult).reason).toMatchObject({ statusCode: 503 })
    expect(after!.status).toBe('fulfilled')
    expect(await auditOf(app, admin, saleId)).toMatchObject({ available: 9, gate: 9, inFlight: 0, drift: 0 })
  })

  /**
   * Three buyers of a 10-unit sale in one batch whose COMMIT loses its answer; their tokens live ten
   * minutes, so only the batcher itself can settle them within the test.
   */
  async function batchWithLostCommit(outcome: LostCommit) {
    const saleId = await newSale(app, admin, { units: 10 })
    const buyers = await createLoadTestUsers(app.db.primary, app.config, 3)
    const gate = createStockGate(app.redis, { tokenTtlMs: 600_000 })
    const batcher = newBatcher(gate)
    const unknownBefore = await batches(app, 'unknown')
    const { cut } = loseNextCommit(app.db.primary, observer, outcome)

    const answers = await admitAndSubmit(
      gate,
      batcher,
      saleId,
      buyers.map((buyer) => buyer.id),
    )
    await cut
    const { rows } = await app.db.primary.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM orders WHERE sale_id = $1',
      [saleId],
    )
    return {
      saleId,
      answers,
      orders: rows[0]!.n,
      unknownBatches: (await batches(app, 'unknown')) - unknownBefore,
      reconcile: () => createReconciler({ db: app.db, gate, metrics: app.metrics }).reconcileSale(saleId),
    }
  }

  function expectAllOutcomeUnknown(answers: PromiseSettledResult<unknown>[]) {
    expect(answers.map((a) => a.status)).toEqual(['rejected', 'rejected', 'rejected'])
    for (const answer of answers)
      expect((answer as PromiseRejectedResult).reason).toMatchObject({
        statusCode: 503,
        code: 'OUTCOME_UNKNOWN',
      })
  }

  it('when a batch committed but the answer to its COMMIT was lost, then its buyers hear 503, and once its server process has ended its tokens are dropped (the units stay taken): drift 0, nothing left for the reconciler', async () => {
    const { saleId, answers, orders, unknownBatches, reconcile } = await batchWithLostCommit('committed')

    expectAllOutcomeUnknown(answers)
    expect(unknownBatches).toBe(1)
    expect(orders).toBe(3)
    await waitFor(
      'the lost COMMIT to be settled',
      async () => (await auditOf(app, admin, saleId)).inFlight === 0,
      10_000,
    )
    expect(await auditOf(app, admin, saleId)).toMatchObject(THREE_OF_TEN_SETTLED)

    expect(await reconcile()).toMatchObject({ released: 0, dropped: 0 })
    expect(await auditOf(app, admin, saleId)).toMatchObject(THREE_OF_TEN_SETTLED)
  })

  it('when a batch COMMIT was cut before Postgres got it, then its buyers hear 503, and once its server process has ended each unit goes back to the gate once: drift is 0', async () => {
    const { saleId, answers, orders, unknownBatches, reconcile } = await batchWithLostCommit('rolled back')

    expectAllOutcomeUnknown(answers)
    expect(unknownBatches).toBe(1)
    expect(orders).toBe(0)
    await waitFor(
      'the lost COMMIT to be settled',
      async () => (await auditOf(app, admin, saleId)).inFlight === 0,
      10_000,
    )

    expect(await reconcile()).toMatchObject({ released: 0, dropped: 0 })
    expect(await auditOf(app, admin, saleId)).toMatchObject({
      available: 10,
      reserved: 0,
      gate: 10,
      inFlight: 0,
      drift: 0,
      violations: [],
    })
  })
  it('when the gate believes more units remain than Postgres has, then the batch fails as a whole (503, nothing written, Postgres unchanged) and the gate is rebuilt from Postgres before it admits again', async () => {
    const saleId = await newSale(app, admin, { units: 10 })
    const buyers = await createLoadTestUsers(app.db.primary, app.config, 15)
    const gate = createStockGate(app.redis, { tokenTtlMs: 30_000 })
    // What a promoted replica that missed the last decrements would hold, without the run-id fence to
    // catch it: 10 more units than Postgres has.
    await app.redis.hincrby(`sale:{${saleId}}:gate`, 'available', 10)
    const batcher = newBatcher(gate)

    const answers = await admitAndSubmit(
      gate,
      batcher,
      saleId,
      buyers.map((buyer) => buyer.id),
    )

    expect(answers.every((a) => a.status === 'rejected')).toBe(true)
    expect((answers[0] as PromiseRejectedResult).reason).toMatchObject({
      statusCode: 503,
      code: 'SALE_UNAVAILABLE',
    })
    const { rows } = await app.db.primary.query<{ n: number; available: number }>(
      `SELECT (SELECT count(*)::int FROM orders WHERE sale_id = $1) AS n, available
         FROM flash_sale_stock WHERE sale_id = $1`,
      [saleId],
    )
    expect(rows[0]).toEqual({ n: 0, available: 10 })
    // Marked stale: nobody is admitted on its wrong count; the purchase path rebuilds it from Postgres.
    await waitFor(
      'the gate to be marked stale',
      async () => (await gate.admit(saleId, buyers[0]!.id, 1)).outcome === 'gate_missing',
      5000,
    )
    const sold = await Promise.all(buyers.map((buyer) => purchase(app, buyer, saleId)))
    expect(sold.filter((r) => r.statusCode === 201)).toHaveLength(10)
    expect(sold.filter((r) => r.statusCode === 409).map((r) => r.json<{ code: string }>().code)).toEqual(
      Array(5).fill('SOLD_OUT'),
    )
    expect(await auditOf(app, admin, saleId)).toMatchObject({ available: 0, drift: 0, violations: [] })
  })

  it("when a batch waited for the stock row past half of its reservations' time, then nothing commits, its buyers hear 503 and their units go back to the gate; once the row is free, the next batch commits", async () => {
    const saleId = await newSale(app, admin, { units: 10 })
    const buyers = await createLoadTestUsers(app.db.primary, app.config, 4)
    const gate = createStockGate(app.redis, { tokenTtlMs: 30_000 })
    const batcher = createOrderBatcher({
      db: app.db,
      gate,
      metrics: app.metrics,
      log: { warn: () => {} },
      reservationTtlSeconds: 2,
      maxBatch: 128,
      maxWaitMs: 50,
      maxConcurrent: 1,
      statementTimeoutMs: 5000,
    })
    const holder = await app.db.primary.connect()
    let answers: PromiseSettledResult<unknown>[]
    try {
      // What a gate rebuild does (src/purchase/gate/gate-rebuild.ts): the sale's stock row locked.
      await holder.query('BEGIN')
      await holder.query('SELECT 1 FROM flash_sale_stock WHERE sale_id = $1 FOR UPDATE', [saleId])
      const { rows: holderRows } = await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
      const submitted = admitAndSubmit(
        gate,
        batcher,
        saleId,
        buyers.slice(0, 3).map((buyer) => buyer.id),
      )
      // The batch waits at its stock UPDATE; hold the row past half of the 2 s reservation.
      await waitFor(
        'the batch to wait for the stock row',
        async () => (await blockedSessions(observer, '%UPDATE flash_sale_stock%', holderRows[0]!.pid)) > 0,
        10_000,
      )
      await sleep(1200)
      await holder.query('COMMIT')
      answers = await submitted
    } finally {
      holder.release()
    }

    expect(answers.map((a) => a.status)).toEqual(['rejected', 'rejected', 'rejected'])
    expect((answers[0] as PromiseRejectedResult).reason).toMatchObject({
      statusCode: 503,
      code: 'SALE_UNAVAILABLE',
    })
    expect(await auditOf(app, admin, saleId)).toMatchObject({
      available: 10,
      reserved: 0,
      ordersReserved: 0,
      gate: 10,
      inFlight: 0,
      drift: 0,
      violations: [],
    })
    const next = await admitAndSubmit(gate, batcher, saleId, [buyers[3]!.id])
    expect(next.map((a) => a.status)).toEqual(['fulfilled'])
  })

  it('when a batch is still committing after its token passed its deadline, then the reconciler waits for that COMMIT and drops the token instead of giving its unit back', async () => {
    const saleId = await newSale(app, admin, { units: 10 })
    const [buyer] = await createLoadTestUsers(app.db.primary, app.config, 1)
    const gate = createStockGate(app.redis, { tokenTtlMs: 200 })
    const reconciler = createReconciler({ db: app.db, gate, metrics: app.metrics })
    const admission = await gate.admit(saleId, buyer!.id, 1)
    if (admission.outcome !== 'admitted') throw new Error(`not admitted: ${admission.outcome}`)
    const batch = await app.db.primary.connect()
    try {
      // What a batch does, up to its COMMIT: the order written, the stock row updated (and locked).
      await batch.query('BEGIN')
      const sale = (await findSale(app.db.primary, saleId))!
      await writeSaleOrders(
        batch,
        sale,
        [
          {
            orderId: randomUUID(),
            userId: buyer!.id,
            quantity: 1,
            idempotency: null,
            reservationToken: admission.token,
          },
        ],
        { ttlSeconds: 600, stock: 'none' },
      )
      await batch.query(decrementsReturningVersion(SALE_STOCK, [{ id: saleId, quantity: 1 }]))
      await sleep(300)

      const reconciled = reconciler.reconcileSale(saleId)
      const waitsOrEnds = await Promise.race([
        reconciled.then(() => 'ended'),
        waitFor(
          'the reconciler to wait for the committing batch',
          async () => (await blockedSessions(observer, '%FOR SHARE%')) > 0,
          5000,
        ).then(() => 'waits'),
      ])
      expect(waitsOrEnds).toBe('waits')
      await batch.query('COMMIT')
      expect(await reconciled).toMatchObject({ dropped: 1, released: 0 })
    } finally {
      batch.release()
    }
    expect(await auditOf(app, admin, saleId)).toMatchObject({
      available: 9,
      gate: 9,
      inFlight: 0,
      drift: 0,
      violations: [],
    })
  })

  it('when the server ends a batch session that waits at its COMMIT step (pg_terminate_backend), then its tokens are settled at once: the batch rolled back, and each unit goes back to the gate once', async () => {
    const saleId = await newSale(app, admin, { units: 10 })
    const buyers = await createLoadTestUsers(app.db.primary, app.config, 2)
    const gate = createStockGate(app.redis, { tokenTtlMs: 600_000 })
    // A statement timeout longer than the test: only the server's own ending settles the tokens now.
    const batcher = newBatcher(gate, app.db, 600_000)
    const holder = await app.db.primary.connect()
    try {
      await holder.query('BEGIN')
      await holder.query('SELECT 1 FROM flash_sale_stock WHERE sale_id = $1 FOR UPDATE', [saleId])
      const { rows } = await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
      const answers = admitAndSubmit(
        gate,
        batcher,
        saleId,
        buyers.map((b) => b.id),
      )
      // The batch's stock UPDATE (sent with its COMMIT) waits for the row.
      await waitFor(
        'the batch to wait for the stock row',
        async () => (await blockedSessions(observer, '%UPDATE flash_sale_stock%', rows[0]!.pid)) > 0,
        5000,
      )
      await observer.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE query LIKE '%UPDATE flash_sale_stock%' AND $1 = ANY(pg_blocking_pids(pid))`,
        [rows[0]!.pid],
      )
      expect((await answers).map((a) => a.status)).toEqual(['rejected', 'rejected'])
      await holder.query('COMMIT')
    } finally {
      holder.release()
    }
    await waitFor(
      'the ended batch to be settled',
      async () => (await auditOf(app, admin, saleId)).inFlight === 0,
      10_000,
    )
    expect(await auditOf(app, admin, saleId)).toMatchObject({
      available: 10,
      gate: 10,
      inFlight: 0,
      drift: 0,
      violations: [],
    })
  })

  it("when a current gate disagrees with Postgres with nothing in flight, then the reconciler marks it stale on the second round running into it, and it is rebuilt to Postgres' count", async () => {
    const saleId = await newSale(app, admin, { units: 10 })
    const gate = createStockGate(app.redis, { tokenTtlMs: 30_000 })
    const reconciler = createReconciler({ db: app.db, gate, metrics: app.metrics })
    // Three units more than Postgres has, as a lost or doubled Redis write would leave it.
    await app.redis.hincrby(`sale:{${saleId}}:gate`, 'available', 3)

    const first = await reconciler.reconcileSale(saleId)
    const second = await reconciler.reconcileSale(saleId)
    const third = await reconciler.reconcileSale(saleId)

    expect(first.drift).toBe(3)
    expect(second.drift).toBe(3)
    expect(third).toMatchObject({ rebuilt: true, drift: 0 })
    expect(await auditOf(app, admin, saleId)).toMatchObject({ available: 10, gate: 10, drift: 0 })
  })
})
