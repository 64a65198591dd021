import type { FastifyInstance } from 'fastify'
import { setImmediate } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  auditOf,
  settledAuditOf,
  buildTestApp,
  newAdmin,
  newSale,
  releaseHooksOf,
  type TestUser,
} from '../../../test/support/app.js'
import { purchase } from '../../../test/support/purchase.js'
import { waitFor } from '../../../scripts/stack/process.js'
import { createLoadTestUsers, type LoadTestUser } from '../../auth/load-test-users.js'
import { STOCK_STRATEGIES } from '../../config.js'
import { createStockGate } from './stock-gate.js'

/**
 * Sends every buyer's purchase without waiting for answers, a few per event-loop turn: in one test
 * process the app instances would otherwise take turns in whole blocks, where separate worker
 * processes interleave.
 */
async function purchaseAll(apps: FastifyInstance[], buyers: LoadTestUser[], saleId: number) {
  const pending: ReturnType<typeof purchase>[] = []
  for (const [i, buyer] of buyers.entries()) {
    pending.push(purchase(apps[i % apps.length]!, buyer, saleId))
    if (i % 25 === 24) await setImmediate()
  }
  return Promise.all(pending)
}

const statuses = (answers: { statusCode: number; json(): unknown }[]) => {
  const histogram: Record<string, number> = {}
  for (const answer of answers) {
    const code =
      answer.statusCode === 201 ? '201' : `${answer.statusCode} ${(answer.json() as { code: string }).code}`
    histogram[code] = (histogram[code] ?? 0) + 1
  }
  return histogram
}

async function batchTransactions(apps: FastifyInstance[]): Promise<number> {
  let total = 0
  for (const app of apps) {
    const metric = await app.metrics.orderBatches.get()
    total += metric.values
      .filter((v) => v.labels.outcome === 'committed')
      .reduce((sum, v) => sum + v.value, 0)
  }
  return total
}

type Answer = Awaited<ReturnType<typeof purchase>>

async function saleOrders(app: FastifyInstance, saleId: number): Promise<number> {
  const { rows } = await app.db.primary.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM orders WHERE sale_id = $1',
    [saleId],
  )
  return rows[0]!.n
}

describe('flash sale on the redis-gate strategy', () => {
  let apps: FastifyInstance[]
  let admin: TestUser

  beforeAll(async () => {
    // Three app instances share Redis and Postgres, as three PM2 workers do.
    apps = await Promise.all(
      [0, 1, 2].map(() => buildTestApp({ STOCK_STRATEGY: 'redis-gate', GATE_TOKEN_TTL_MS: '300' })),
    )
    admin = await newAdmin(apps[0]!)
  })
  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()))
  })

  it('when 1,000 buyers race for 100 units on three instances, exactly 100 orders exist, the gate is 0 and drift is 0', async () => {
    const saleId = await newSale(apps[0]!, admin, { units: 100 })
    const buyers = await createLoadTestUsers(apps[0]!.db.primary, apps[0]!.config, 1000)
    const transactionsBefore = await batchTransactions(apps)

    const started = performance.now()
    const answers = await purchaseAll(apps, buyers, saleId)
    const wallMs = performance.now() - started

    const histogram = statuses(answers)
    expect(histogram).toEqual({ '201': 100, '409 SOLD_OUT': 900 })
    expect(await saleOrders(apps[0]!, saleId)).toBe(100)
    const audit = await settledAuditOf(apps[0]!, admin, saleId)
    expect(audit).toMatchObject({
      initial: 100,
      available: 0,
      reserved: 100,
      sold: 0,
      gate: 0,
      inFlight: 0,
      drift: 0,
    })
    expect(audit.oversold).toBe(false)
    expect(audit.violations).toEqual([])
    const transactions = (await batchTransactions(apps)) - transactionsBefore
    console.log(
      `1,000 buyers / 100 units: ${JSON.stringify(histogram)} in ${wallMs.toFixed(0)} ms, ${transactions} batch transactions`,
    )
    expect(transactions).toBeLessThan(100)
  })

  it('when one user sends 50 purchases at once, the per-user limit holds in Redis and in Postgres', async () => {
    const app = await buildTestApp({ STOCK_STRATEGY: 'redis-gate', RATE_LIMIT_USER_PER_SECOND: '1000' })
    try {
      const saleId = await newSale(app, admin, { units: 20, perUserLimit: 2 })
      const [buyer] = await createLoadTestUsers(app.db.primary, app.config, 1)

      const answers = await Promise.all(Array.from({ length: 50 }, () => purchase(app, buyer!, saleId)))

      expect(statuses(answers)).toEqual({ '201': 2, '409 PER_USER_LIMIT': 48 })
      const { rows } = await app.db.primary.query<{ units: number }>(
        'SELECT units FROM sale_user_units WHERE sale_id = $1 AND user_id = $2',
        [saleId, buyer!.id],
      )
      expect(rows[0]!.units).toBe(2)
      expect((await auditOf(app, admin, saleId)).violations).toEqual([])
    } finally {
      await app.close()
    }
  })

  it('when a user exceeds the rate limit, the answer is 429 RATE_LIMITED with Retry-After', async () => {
    const saleId = await newSale(apps[0]!, admin, { units: 50, perUserLimit: 50 })
    const [buyer] = await createLoadTestUsers(apps[0]!.db.primary, apps[0]!.config, 1)

    const answers = await Promise.all(Array.from({ length: 25 }, () => purchase(apps[0]!, buyer!, saleId)))

    const limited = answers.filter((a) => a.statusCode === 429)
    expect(limited.length).toBeGreaterThan(0)
    expect(limited[0]!.json()).toMatchObject({ code: 'RATE_LIMITED' })
    expect(Number(limited[0]!.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    expect(answers.filter((a) => a.statusCode >= 500)).toEqual([])
  })

  it("when more admitted buyers wait in a worker's batch queue than ORDER_QUEUE_MAX, then the next purchase there hears 503 with Retry-After at once and takes no unit", async () => {
    // One worker whose batches wait 400 ms for company: admitted buyers pile up in its queue.
    const app = await buildTestApp({
      STOCK_STRATEGY: 'redis-gate',
      ORDER_QUEUE_MAX: '2',
      ORDER_BATCH_WAIT_MS: '400',
    })
    try {
      const saleId = await newSale(app, admin, { units: 10 })
      const buyers = await createLoadTestUsers(app.db.primary, app.config, 3)
      const gate = createStockGate(app.redis, { tokenTtlMs: 30_000 })
      const queued = buyers.slice(0, 2).map((buyer) => purchase(app, buyer, saleId))
      await waitFor('two buyers queued', async () => (await gate.unitsInFlight(saleId)) === 2, 2000)

      const refused = await purchase(app, buyers[2]!, saleId)

      expect(refused.statusCode).toBe(503)
      expect(refused.headers['retry-after']).toBeDefined()
      expect(await gate.unitsInFlight(saleId)).toBe(2)
      expect((await Promise.all(queued)).map((r) => r.statusCode)).toEqual([201, 201])
      expect(await settledAuditOf(app, admin, saleId)).toMatchObject({
        available: 8,
        gate: 8,
        inFlight: 0,
        drift: 0,
      })
    } finally {
      await app.close()
    }
  })

  it('when a worker dies after the gate admitted a buyer and before its batch, the units come back exactly once', async () => {
    const app = apps[0]!
    const saleId = await newSale(app, admin, { units: 5 })
    const [buyer] = await createLoadTestUsers(app.db.primary, app.config, 1)
    // The "dead worker": admitted by the gate, never handed to a batcher.
    const gate = createStockGate(app.redis, { tokenTtlMs: 200 })
    const admission = await gate.admit(saleId, buyer!.id, 1)
    expect(admission.outcome).toBe('admitted')
    expect((await auditOf(app, admin, saleId)).gate).toBe(4)

    await new Promise((resolve) => setTimeout(resolve, 300))
    // Two reconcilers at once, as two jobs processes would.
    const { createReconciler } = await import('./reconciler.js')
    const reconcilers = apps.slice(0, 2).map((a) => createReconciler({ db: a.db, gate, metrics: a.metrics }))
    const results = await Promise.all(reconcilers.map((r) => r.reconcileSale(saleId)))

    expect(results.reduce((sum, r) => sum + r.released, 0)).toBe(1)
    const audit = await auditOf(app, admin, saleId)
    expect(audit).toMatchObject({ available: 5, gate: 5, inFlight: 0, drift: 0 })
    // The buyer's per-user units came back too: they can buy again.
    expect((await purchase(app, buyer!, saleId)).statusCode).toBe(201)
  })

  it('when Redis is emptied mid-sale, buyers get 503 until the gate is rebuilt, nothing oversells, and the rebuilt gate matches Postgres', async () => {
    const saleId = await newSale(apps[0]!, admin, { units: 60 })
    const buyers = await createLoadTestUsers(apps[0]!.db.primary, apps[0]!.config, 400)

    const first = Promise.all(buyers.slice(0, 200).map((b, i) => purchase(apps[i % 3]!, b, saleId)))
    await new Promise((resolve) => setTimeout(resolve, 5))
    await apps[0]!.redis.flushall()
    const afterFlush = await purchase(apps[1]!, buyers[200]!, saleId)
    const rest = await Promise.all(buyers.slice(201).map((b, i) => purchase(apps[i % 3]!, b, saleId)))
    const answers = [...(await first), afterFlush, ...rest]

    expect([201, 409, 503]).toContain(afterFlush.statusCode)
    expect(answers.filter((a) => a.statusCode >= 500 && a.statusCode !== 503)).toEqual([])
    const won = answers.filter((a) => a.statusCode === 201).length
    expect(won).toBeLessThanOrEqual(60)
    expect(await saleOrders(apps[0]!, saleId)).toBe(won)
    const audit = await settledAuditOf(apps[0]!, admin, saleId)
    expect(audit.oversold).toBe(false)
    expect(audit.reserved).toBe(won)
    expect(audit.gate).toBe(audit.available)
    expect(audit.drift).toBe(0)
  })

  it('when Redis forgets its scripts mid-sale (SCRIPT FLUSH), buyers do not notice', async () => {
    const saleId = await newSale(apps[0]!, admin, { units: 30 })
    const buyers = await createLoadTestUsers(apps[0]!.db.primary, apps[0]!.config, 200)

    const first = Promise.all(buyers.slice(0, 100).map((b, i) => purchase(apps[i % 3]!, b, saleId)))
    await apps[0]!.redis.script('FLUSH')
    const rest = await Promise.all(buyers.slice(100).map((b, i) => purchase(apps[i % 3]!, b, saleId)))

    expect(statuses([...(await first), ...rest])).toEqual({ '201': 30, '409 SOLD_OUT': 170 })
    expect(await settledAuditOf(apps[0]!, admin, saleId)).toMatchObject({ available: 0, gate: 0, drift: 0 })
  })

  it('when a gate-admitted order is cancelled or expires, its units return to the gate exactly once', async () => {
    const app = await buildTestApp({ STOCK_STRATEGY: 'redis-gate', RESERVATION_TTL_SECONDS: '1' })
    try {
      const saleId = await newSale(app, admin, { units: 3 })
      const [a, b] = await createLoadTestUsers(app.db.primary, app.config, 2)
      const cancelled = (await purchase(app, a!, saleId)).json<{ id: string }>()
      const expiring = (await purchase(app, b!, saleId)).json<{ id: string }>()
      expect((await auditOf(app, admin, saleId)).gate).toBe(1)

      const cancel = () =>
        app.inject({
          method: 'POST',
          url: `/api/orders/${cancelled.id}/cancel`,
          headers: { authorization: `Bearer ${a!.token}` },
        })
      expect((await cancel()).statusCode).toBe(200)
      expect((await cancel()).statusCode).toBe(200)
      expect(await settledAuditOf(app, admin, saleId)).toMatchObject({ gate: 2, available: 2, drift: 0 })

      await new Promise((resolve) => setTimeout(resolve, 1100))
      const { sweepExpiredReservations } = await import('../../orders/expiry-sweeper.js')
      await sweepExpiredReservations(app.db.primary, app.metrics, releaseHooksOf(app))
      await sweepExpiredReservations(app.db.primary, app.metrics, releaseHooksOf(app))
      expect(expiring.id).toBeDefined()
      // The test stack's own jobs process sweeps too, and SKIP LOCKED makes this test's sweeps pass over
      // an order it is releasing at that moment: wait for that release to commit, whoever makes it.
      await waitFor(
        'the expiring order to be released',
        async () => (await auditOf(app, admin, saleId)).reserved === 0,
        10_000,
      )
      expect(await settledAuditOf(app, admin, saleId)).toMatchObject({
        gate: 3,
        available: 3,
        reserved: 0,
        drift: 0,
      })
      // Both buyers got their per-user units back too.
      expect((await purchase(app, b!, saleId)).statusCode).toBe(201)
    } finally {
      await app.close()
    }
  })

  it('when a worker already knows the sale is sold out, a keyed answer is still recorded, replayed and guarded', async () => {
    const app = apps[0]!
    const saleId = await newSale(app, admin, { units: 1 })
    const [first, second] = await createLoadTestUsers(app.db.primary, app.config, 2)
    expect((await purchase(app, first!, saleId)).statusCode).toBe(201)
    // The gate says SOLD_OUT once; from then on this worker answers from memory.
    expect((await purchase(app, second!, saleId)).json()).toMatchObject({ code: 'SOLD_OUT' })

    const fromMemory = await purchase(app, second!, saleId, 'late-1')
    const replay = await purchase(app, second!, saleId, 'late-1')
    const reused = await app.inject({
      method: 'POST',
      url: `/api/sales/${saleId}/purchase`,
      headers: { authorization: `Bearer ${second!.token}`, 'idempotency-key': 'late-1' },
      payload: { quantity: 2 },
    })

    expect(fromMemory.statusCode).toBe(409)
    expect(fromMemory.headers['idempotent-replayed']).toBeUndefined()
    expect(replay.statusCode).toBe(409)
    expect(replay.headers['idempotent-replayed']).toBe('true')
    expect(replay.json()).toEqual(fromMemory.json())
    expect(reused.statusCode).toBe(422)
  })

  it('when a keyed purchase is retried, the same order is replayed and a SOLD_OUT is replayed without Postgres', async () => {
    const saleId = await newSale(apps[0]!, admin, { units: 1 })
    const [winner, loser] = await createLoadTestUsers(apps[0]!.db.primary, apps[0]!.config, 2)
    const first = await purchase(apps[0]!, winner!, saleId, 'buy-1')
    const again = await purchase(apps[1]!, winner!, saleId, 'buy-1')
    expect(again.headers['idempotent-replayed']).toBe('true')
    expect(again.json()).toEqual(first.json())

    const soldOut = await purchase(apps[0]!, loser!, saleId, 'buy-1')
    const replayed = await purchase(apps[2]!, loser!, saleId, 'buy-1')
    expect(soldOut.json()).toMatchObject({ code: 'SOLD_OUT' })
    expect(replayed.statusCode).toBe(409)
    expect(replayed.headers['idempotent-replayed']).toBe('true')
    expect(await saleOrders(apps[0]!, saleId)).toBe(1)
  })

  /** The retry replays the first answer's order (marked as a replay), and the sale has that one order. */
  async function expectReplayOf(first: Answer, retry: Answer, saleId: number) {
    expect(retry.statusCode).toBe(201)
    expect(retry.headers['idempotent-replayed']).toBe('true')
    expect(retry.json()).toMatchObject({ id: first.json<{ id: string }>().id })
    expect(await saleOrders(apps[0]!, saleId)).toBe(1)
  }

  /** Deletes a key's Redis record, as an eviction or a Redis that came back empty would. */
  async function forgetKeyInRedis(app: FastifyInstance, saleId: number, userId: string, key: string) {
    await app.redis.del(`sale:{${saleId}}:idem:${userId}:${key}`, `idem:{${userId}}:${key}`)
  }

  it('when Redis forgot a keyed purchase and the buyer is at the per-user limit, then the retry replays the order from Postgres, not PER_USER_LIMIT', async () => {
    const saleId = await newSale(apps[0]!, admin, { units: 5, perUserLimit: 1 })
    const [buyer] = await createLoadTestUsers(apps[0]!.db.primary, apps[0]!.config, 1)
    const first = await purchase(apps[0]!, buyer!, saleId, 'forgotten-1')
    expect(first.statusCode).toBe(201)
    await forgetKeyInRedis(apps[0]!, saleId, buyer!.id, 'forgotten-1')

    const retry = await purchase(apps[1]!, buyer!, saleId, 'forgotten-1')

    await expectReplayOf(first, retry, saleId)
  })

  it('when Redis lost how a keyed purchase ended (its key still in flight, its token gone), then the retry replays the order from Postgres at once, not 409 IDEMPOTENCY_KEY_IN_USE until the lock lapses', async () => {
    const saleId = await newSale(apps[0]!, admin, { units: 5, perUserLimit: 1 })
    const [buyer] = await createLoadTestUsers(apps[0]!.db.primary, apps[0]!.config, 1)
    const first = await purchase(apps[0]!, buyer!, saleId, 'lost-confirm-1')
    expect(first.statusCode).toBe(201)
    // What the key held before the batch's confirm, which Redis lost with its last second of writes: the
    // attempt's in-flight state. Its token is no longer in flight (the reconciler dropped it).
    const redisKey = `sale:{${saleId}}:idem:${buyer!.id}:lost-confirm-1`
    const finished = JSON.parse((await apps[0]!.redis.get(redisKey))!) as { h: string }
    await apps[0]!.redis.set(
      redisKey,
      JSON.stringify({ h: finished.h, t: `${buyer!.id}:1:gone` }),
      'PX',
      30_000,
    )

    const retry = await purchase(apps[1]!, buyer!, saleId, 'lost-confirm-1')

    await expectReplayOf(first, retry, saleId)
  })

  it('when Redis forgot a keyed purchase and the sale sold out since, then the retry replays the order from Postgres, not SOLD_OUT, even on a worker that knows the sale is sold out', async () => {
    const saleId = await newSale(apps[0]!, admin, { units: 1, perUserLimit: 2 })
    const [buyer, loser] = await createLoadTestUsers(apps[0]!.db.primary, apps[0]!.config, 2)
    const first = await purchase(apps[0]!, buyer!, saleId, 'forgotten-2')
    expect(first.statusCode).toBe(201)
    // The gate says SOLD_OUT to someone else: this worker now answers unkeyed buyers from memory.
    expect((await purchase(apps[0]!, loser!, saleId)).json()).toMatchObject({ code: 'SOLD_OUT' })
    await forgetKeyInRedis(apps[0]!, saleId, buyer!.id, 'forgotten-2')

    const retry = await purchase(apps[0]!, buyer!, saleId, 'forgotten-2')

    await expectReplayOf(first, retry, saleId)
  })
})

describe.each(STOCK_STRATEGIES.filter((s) => s !== 'redis-gate'))(
  'flash sale on the %s strategy',
  (strategy) => {
    it('when 300 buyers race for 20 sale units, exactly 20 orders exist and every loser hears SOLD_OUT', async () => {
      const apps = await Promise.all([0, 1].map(() => buildTestApp({ STOCK_STRATEGY: strategy })))
      try {
        const admin = await newAdmin(apps[0]!)
        const saleId = await newSale(apps[0]!, admin, { units: 20 })
        const buyers = await createLoadTestUsers(apps[0]!.db.primary, apps[0]!.config, 300)

        const answers = await purchaseAll(apps, buyers, saleId)

        expect(statuses(answers)).toEqual({ '201': 20, '409 SOLD_OUT': 280 })
        const audit = await auditOf(apps[0]!, admin, saleId)
        expect(audit).toMatchObject({
          initial: 20,
          available: 0,
          reserved: 20,
          oversold: false,
          violations: [],
        })
      } finally {
        await Promise.all(apps.map((app) => app.close()))
      }
    })
  },
)
