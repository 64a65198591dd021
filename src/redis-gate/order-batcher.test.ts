import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditOf, buildTestApp, newAdmin, newSale, type TestUser } from '../../test/support/app.js'
import { createLoadTestUsers } from '../auth/load-test-users.js'
import { createOrderBatcher } from './order-batcher.js'
import { createStockGate } from './stock-gate.js'

async function splitBatches(app: FastifyInstance): Promise<number> {
  const metric = await app.metrics.orderBatches.get()
  return metric.values.filter((v) => v.labels.outcome === 'split').reduce((sum, v) => sum + v.value, 0)
}

// The batcher against real Postgres and Redis: the gate admits, the batcher writes.
describe('order batcher', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp({ STOCK_STRATEGY: 'redis-gate' })
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await app.close()
  })

  it('when one buyer in a batch has no user row, the other 40 get their orders, that buyer gets 401 and its unit goes back to the gate once', async () => {
    const saleId = await newSale(app, admin, { units: 50 })
    const honest = await createLoadTestUsers(app.db.primary, app.config, 40)
    const gate = createStockGate(app.redis, { tokenTtlMs: 30_000 })
    // A long wait and a large batch: all 41 buyers land in one transaction.
    const batcher = createOrderBatcher({
      db: app.db,
      gate,
      metrics: app.metrics,
      log: { warn: () => {} },
      reservationTtlSeconds: 600,
      maxBatch: 128,
      maxWaitMs: 50,
      maxConcurrent: 1,
    })
    const splitsBefore = await splitBatches(app)
    const buyers = [
      ...honest.slice(0, 20).map((u) => u.id),
      randomUUID(),
      ...honest.slice(20).map((u) => u.id),
    ]

    const answers = await Promise.allSettled(
      buyers.map(async (userId) => {
        const admission = await gate.admit(saleId, userId, 1)
        if (admission.outcome !== 'admitted') throw new Error(`not admitted: ${admission.outcome}`)
        return batcher.submit({ saleId, userId, quantity: 1, token: admission.token, idempotency: null })
      }),
    )

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
})
