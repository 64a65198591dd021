import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  auditOf,
  buildTestApp,
  newAdmin,
  newSale,
  releaseHooksOf,
  type TestUser,
} from '../../../test/support/app.js'
import { createLoadTestUsers, type LoadTestUser } from '../../auth/load-test-users.js'
import { withTransaction } from '../../db/transaction.js'
import { releaseOrdersStock } from '../../orders/order-release.js'
import type { Order } from '../../orders/order.js'
import { findOrder, markCancelledIfReserved } from '../../orders/orders.repository.js'
import { rebuildGateFromPostgres } from './gate-rebuild.js'
import { createReconciler } from './reconciler.js'
import { gateReleasesOf } from './release-to-gate.js'
import { createStockGate, type StockGate } from './stock-gate.js'

const purchase = (app: FastifyInstance, buyer: LoadTestUser, saleId: number) =>
  app.inject({
    method: 'POST',
    url: `/api/sales/${saleId}/purchase`,
    headers: { authorization: `Bearer ${buyer.token}` },
    payload: { quantity: 1 },
  })

describe('gate releases through the outbox', () => {
  let app: FastifyInstance
  let admin: TestUser
  let gate: StockGate

  beforeAll(async () => {
    app = await buildTestApp({ STOCK_STRATEGY: 'redis-gate' })
    admin = await newAdmin(app)
    gate = createStockGate(app.redis, { tokenTtlMs: 30_000 })
  })
  afterAll(async () => {
    await app.close()
  })

  /** A sale of `units` and one buyer holding one unit of it, as a reserved order. */
  async function saleWithOrder(
    units: number,
  ): Promise<{ saleId: number; buyer: LoadTestUser; order: Order }> {
    const saleId = await newSale(app, admin, { units })
    const [buyer] = await createLoadTestUsers(app.db.primary, app.config, 1)
    const answer = await purchase(app, buyer!, saleId)
    expect(answer.statusCode).toBe(201)
    return { saleId, buyer: buyer!, order: answer.json<Order>() }
  }

  /** The cancel's transaction, and then the process dies: Postgres released the order, Redis heard nothing. */
  async function cancelAndDieBeforeRedis(order: Order) {
    const hooks = releaseHooksOf(app)
    return withTransaction(app.db.primary, async (tx) => {
      expect(await markCancelledIfReserved(tx, order.id)).toBe(true)
      return releaseOrdersStock(tx, [(await findOrder(tx, order.id))!], 'cancelled', {
        beforeStock: hooks.beforeStock,
        afterStock: hooks.afterStock,
      })
    })
  }

  async function pendingMark(orderId: string): Promise<number | null> {
    const { rows } = await app.db.primary.query<{ v: number | null }>(
      'SELECT gate_release_version AS v FROM orders WHERE id = $1',
      [orderId],
    )
    return rows[0]!.v
  }

  /** Ages an outbox mark past the reconciler's grace period, instead of waiting it out. */
  async function ageMark(orderId: string) {
    await app.db.primary.query(`UPDATE orders SET updated_at = now() - interval '1 minute' WHERE id = $1`, [
      orderId,
    ])
  }

  it('when a cancel commits and Redis answers, then the units are back in the gate at once and no outbox mark is left', async () => {
    const { saleId, buyer, order } = await saleWithOrder(3)

    const cancel = await app.inject({
      method: 'POST',
      url: `/api/orders/${order.id}/cancel`,
      headers: { authorization: `Bearer ${buyer.token}` },
    })

    expect(cancel.statusCode).toBe(200)
    expect(await pendingMark(order.id)).toBeNull()
    expect(await auditOf(app, admin, saleId)).toMatchObject({ available: 3, gate: 3, drift: 0 })
  })

  it('when the process dies between COMMIT and Redis, then the reconciler applies the pending release exactly once, even two reconcilers at once', async () => {
    const { saleId, buyer, order } = await saleWithOrder(5)
    const release = await cancelAndDieBeforeRedis(order)
    expect(await pendingMark(order.id)).toBe(release.saleVersions.get(saleId))
    // Stranded: Postgres has the unit back, the gate does not.
    expect(await auditOf(app, admin, saleId)).toMatchObject({ available: 5, gate: 4, drift: -1 })
    const reconcilers = [0, 1].map(() => createReconciler({ db: app.db, gate, metrics: app.metrics }))
    // A fresh mark belongs to its process for a couple of seconds: the reconciler leaves it alone.
    await reconcilers[0]!.applyPendingReleases()
    expect(await pendingMark(order.id)).not.toBeNull()

    await ageMark(order.id)
    await Promise.all(reconcilers.map((r) => r.applyPendingReleases()))
    await reconcilers[0]!.applyPendingReleases()

    expect(await pendingMark(order.id)).toBeNull()
    expect(await auditOf(app, admin, saleId)).toMatchObject({ available: 5, gate: 5, drift: 0 })
    // A cancelled order's units keep counting toward the buyer's per-user limit (1 here), in the gate too.
    const again = await purchase(app, buyer, saleId)
    expect(again.statusCode).toBe(409)
    expect(again.json()).toMatchObject({ code: 'PER_USER_LIMIT' })
  })

  it('when a release is applied twice at once, then the gate gets its units back once', async () => {
    const { saleId, order } = await saleWithOrder(4)
    const [pending] = gateReleasesOf(await cancelAndDieBeforeRedis(order))

    const outcomes = await Promise.all([gate.releaseOrder(pending!), gate.releaseOrder(pending!)])
    const again = await gate.releaseOrder(pending!)

    expect(outcomes.sort()).toEqual(['applied', 'applied_before'])
    expect(again).toBe('applied_before')
    expect(await auditOf(app, admin, saleId)).toMatchObject({ available: 4, gate: 4, drift: 0 })
  })

  it('when the gate was rebuilt after the release committed (version <= fence), then applying the release adds nothing', async () => {
    const { saleId, order } = await saleWithOrder(6)
    const [pending] = gateReleasesOf(await cancelAndDieBeforeRedis(order))
    // A Redis restart between COMMIT and the Redis call: the gate is rebuilt from Postgres, release included.
    await app.redis.hset(`sale:{${saleId}}:gate`, 'run_id', 'f'.repeat(40))
    expect(await rebuildGateFromPostgres(app.db.primary, gate, saleId)).toBe('built')
    expect(Number(await app.redis.hget(`sale:{${saleId}}:gate`, 'fence'))).toBeGreaterThanOrEqual(
      pending!.version,
    )

    expect(await gate.releaseOrder(pending!)).toBe('gate_built_after')
    await ageMark(order.id)
    await createReconciler({ db: app.db, gate, metrics: app.metrics }).applyPendingReleases()

    expect(await pendingMark(order.id)).toBeNull()
    expect(await auditOf(app, admin, saleId)).toMatchObject({ available: 6, gate: 6, drift: 0 })
  })
})
