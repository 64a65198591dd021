import type { FastifyInstance } from 'fastify'
import pg from 'pg'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startService, stopService } from '../../../scripts/stack/stack.js'
import {
  auditOf,
  settledAuditOf,
  buildTestApp,
  newAdmin,
  newSale,
  type TestUser,
} from '../../../test/support/app.js'
import { purchase } from '../../../test/support/purchase.js'
import { waitFor } from '../../../scripts/stack/process.js'
import { localStackOptions, testStack } from '../../../test/support/stack-env.js'
import { createLoadTestUsers } from '../../auth/load-test-users.js'
import { runIdIn, serverRunIdOf } from '../../redis/client.js'
import { rebuildGateFromPostgres } from './gate-rebuild.js'
import { createOrderBatcher } from './order-batcher.js'
import { createReconciler } from './reconciler.js'
import { createStockGate } from './stock-gate.js'
import { blockedSessions } from '../../../test/support/locks.js'

const gateKey = (saleId: number) => `sale:{${saleId}}:gate`
const tokensKey = (saleId: number) => `sale:{${saleId}}:tokens`

/**
 * What a Redis restarted from its append-only file may leave behind: the gate still bears the old
 * server's run id, and the writes of its last moments are gone (here: `extra` units given back that
 * Postgres never released, and a token lost).
 */
async function makeStale(app: FastifyInstance, saleId: number, extra: number, lostToken: string) {
  await app.redis.hset(gateKey(saleId), 'run_id', 'f'.repeat(40))
  await app.redis.hincrby(gateKey(saleId), 'available', extra)
  await app.redis.zrem(tokensKey(saleId), lostToken)
}

describe('the gate fence after a Redis restart', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp({ STOCK_STRATEGY: 'redis-gate' })
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await app.close()
  })

  it('when the gate is stale (old run id, more units than Postgres, a token lost), then the next purchase replaces it from Postgres before admitting, batches in flight are counted once, and drift returns to 0', async () => {
    const saleId = await newSale(app, admin, { units: 10 })
    const buyers = await createLoadTestUsers(app.db.primary, app.config, 6)
    for (const buyer of buyers.slice(0, 3)) expect((await purchase(app, buyer, saleId)).statusCode).toBe(201)
    // Two buyers admitted by the gate whose batches are still to come.
    const gate = createStockGate(app.redis, { tokenTtlMs: 30_000 })
    const committing = await gate.admit(saleId, buyers[3]!.id, 1)
    const failing = await gate.admit(saleId, buyers[4]!.id, 1)
    if (committing.outcome !== 'admitted' || failing.outcome !== 'admitted') throw new Error('not admitted')
    await makeStale(app, saleId, 5, committing.token)
    // A stale gate is not trusted, not even for the audit.
    expect((await auditOf(app, admin, saleId)).gate).toBeNull()

    expect((await purchase(app, buyers[5]!, saleId)).statusCode).toBe(201)
    const runId = runIdIn(await app.redis.info('server'))
    expect(await app.redis.hget(gateKey(saleId), 'run_id')).toBe(runId)
    // The admitted batch commits after the rebuild: above the new fence, so the gate takes its unit again.
    const batcher = createOrderBatcher({
      db: app.db,
      gate,
      metrics: app.metrics,
      log: { warn: () => {} },
      reservationTtlSeconds: 600,
      maxBatch: 10,
      maxWaitMs: 1,
      maxConcurrent: 1,
      statementTimeoutMs: 5000,
    })
    await batcher.submit({
      saleId,
      userId: buyers[3]!.id,
      quantity: 1,
      token: committing.token,
      idempotency: null,
    })
    // The other batch failed: its token went with the stale gate, so nothing comes back.
    expect(await gate.releaseToken(saleId, failing.token)).toBe(false)

    expect(await settledAuditOf(app, admin, saleId)).toMatchObject({
      available: 5,
      reserved: 5,
      gate: 5,
      inFlight: 0,
      drift: 0,
      violations: [],
    })
  })

  it('when 24 workers rebuild a stale gate at once, then exactly one builds it and it matches Postgres', async () => {
    const apps = [app, await buildTestApp({ STOCK_STRATEGY: 'redis-gate' })]
    try {
      const saleId = await newSale(app, admin, { units: 30 })
      const buyers = await createLoadTestUsers(app.db.primary, app.config, 4)
      for (const buyer of buyers) expect((await purchase(app, buyer, saleId)).statusCode).toBe(201)
      const gates = apps.map((a) => createStockGate(a.redis, { tokenTtlMs: 30_000 }))
      await app.redis.hset(gateKey(saleId), 'run_id', 'f'.repeat(40), 'available', 99)

      const outcomes = await Promise.all(
        Array.from({ length: 24 }, (_, i) =>
          rebuildGateFromPostgres(apps[i % 2]!.db.primary, gates[i % 2]!, saleId),
        ),
      )

      expect(outcomes.filter((o) => o === 'built')).toHaveLength(1)
      expect(outcomes.filter((o) => o === 'current')).toHaveLength(23)
      expect(await settledAuditOf(app, admin, saleId)).toMatchObject({ available: 26, gate: 26, drift: 0 })
    } finally {
      await apps[1]!.close()
    }
  })

  it('when 40 buyers of one worker find the gate stale while the stock row is busy, then that worker queues one rebuild on the row, not one per buyer, and every buyer gets an order once it is free', async () => {
    const saleId = await newSale(app, admin, { units: 50 })
    const buyers = await createLoadTestUsers(app.db.primary, app.config, 40)
    await app.redis.hset(gateKey(saleId), 'run_id', 'f'.repeat(40))
    const holder = await app.db.primary.connect()
    const observer = new pg.Client({ connectionString: app.config.DATABASE_URL })
    await observer.connect()
    let answers: Awaited<ReturnType<typeof purchase>>[]
    try {
      // A batch or a report holding the sale's stock row: the rebuild's FOR UPDATE has to wait for it.
      await holder.query('BEGIN')
      await holder.query('SELECT 1 FROM flash_sale_stock WHERE sale_id = $1 FOR UPDATE', [saleId])
      const answered = Promise.all(buyers.map((buyer) => purchase(app, buyer, saleId)))
      // Rebuilds waiting to lock the stock row: the first waits for the holder, the others queue behind
      // it (Postgres' tuple lock), so they are counted by waiting, not by whom. Asked on a connection of
      // its own: the app's pool may have none left.
      const waiting = () => blockedSessions(observer, '%FOR UPDATE OF st%')
      await waitFor('a rebuild to wait for the stock row', async () => (await waiting()) > 0, 5000)
      // Every buyer has had time to find the gate stale and ask for a rebuild.
      await sleep(500)
      expect(await waiting()).toBe(1)
      await holder.query('COMMIT')
      answers = await answered
    } finally {
      holder.release()
      await observer.end()
    }
    expect(answers.map((a) => a.statusCode)).toEqual(Array(40).fill(201))
    expect(await settledAuditOf(app, admin, saleId)).toMatchObject({ available: 10, gate: 10, drift: 0 })
  })

  it('when a sale has 100,000 holders, then its gate is built with every one of them in one step', async () => {
    const saleId = await newSale(app, admin, { units: 5 })
    const gate = createStockGate(app.redis, { tokenTtlMs: 30_000 })
    await app.redis.del(`sale:{${saleId}}:gate`)
    const usersHolding = Array.from({ length: 100_000 }, (_, n) => ({
      userId: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
      units: 1 + (n % 2),
    }))
    const { rows } = await app.db.primary.query<{ starts_at: Date; ends_at: Date }>(
      'SELECT starts_at, ends_at FROM flash_sales WHERE id = $1',
      [saleId],
    )

    const built = await gate.build(saleId, {
      available: 5,
      startsAt: rows[0]!.starts_at,
      endsAt: rows[0]!.ends_at,
      perUserLimit: 2,
      version: 0,
      usersHolding,
    })

    expect(built).toBe('built')
    expect(await app.redis.hlen(`sale:{${saleId}}:users`)).toBe(100_000)
    expect(await app.redis.hget(`sale:{${saleId}}:users`, usersHolding[99_999]!.userId)).toBe('2')
  })

  it('when the gate is stale and nobody buys, then the reconciler re-fences it from Postgres', async () => {
    const saleId = await newSale(app, admin, { units: 8 })
    const [buyer] = await createLoadTestUsers(app.db.primary, app.config, 1)
    expect((await purchase(app, buyer!, saleId)).statusCode).toBe(201)
    await app.redis.hset(gateKey(saleId), 'run_id', 'f'.repeat(40), 'available', 8)
    const gate = createStockGate(app.redis, { tokenTtlMs: 30_000 })
    const reconciler = createReconciler({ db: app.db, gate, metrics: app.metrics })

    const first = await reconciler.reconcileSale(saleId)
    const second = await reconciler.reconcileSale(saleId)

    expect(first).toMatchObject({ rebuilt: true, drift: 0 })
    expect(second).toMatchObject({ rebuilt: false, drift: 0 })
    expect(await settledAuditOf(app, admin, saleId)).toMatchObject({ available: 7, gate: 7, drift: 0 })
  })

  it.runIf(testStack().options?.services.redis)(
    'when Redis restarts from its append-only file, then the gate it kept is stale, the first purchase rebuilds it under the new run id, and drift is 0 (local stack only: it restarts Redis)',
    async () => {
      const saleId = await newSale(app, admin, { units: 5 })
      const buyers = await createLoadTestUsers(app.db.primary, app.config, 2)
      expect((await purchase(app, buyers[0]!, saleId)).statusCode).toBe(201)
      const before = await app.redis.hget(gateKey(saleId), 'run_id')
      expect(before).toBe(serverRunIdOf(app.redis).now())

      const stack = localStackOptions()
      await stopService(stack, 'redis')
      await startService(stack, 'redis')
      // The gate came back from the append-only file, still fenced to the server that wrote it.
      let answer = await purchase(app, buyers[1]!, saleId)
      for (let i = 0; i < 50 && answer.statusCode === 503; i++) {
        await sleep(200)
        answer = await purchase(app, buyers[1]!, saleId)
      }

      expect(answer.statusCode).toBe(201)
      const after = await app.redis.hget(gateKey(saleId), 'run_id')
      expect(after).not.toBe(before)
      expect(after).toBe(runIdIn(await app.redis.info('server')))
      expect(serverRunIdOf(app.redis).now()).toBe(after)
      expect(await settledAuditOf(app, admin, saleId)).toMatchObject({ available: 3, gate: 3, drift: 0 })
    },
  )
})
