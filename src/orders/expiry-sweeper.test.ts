import type { FastifyInstance } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import { waitFor } from '../../scripts/stack/process.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  buildTestApp,
  fillCart,
  newAdmin,
  newCustomer,
  newProduct,
  releaseHooksOf,
  stockOf,
  type TestUser,
} from '../../test/support/app.js'
import { sweepExpiredReservations } from './expiry-sweeper.js'
import { expireDueOrders } from './orders.repository.js'

describe('expiry sweeper', () => {
  let apps: FastifyInstance[]
  let admin: TestUser

  beforeAll(async () => {
    // Two app instances stand for two jobs processes sweeping the same database. Reservations live long
    // enough that none lapses while a test still makes its orders (on a loaded machine twenty checkouts
    // can take longer than a short TTL, and the test stack's own jobs process would sweep the first
    // ones early); a test ends them itself with expireNow.
    apps = await Promise.all([0, 1].map(() => buildTestApp({ RESERVATION_TTL_SECONDS: '300' })))
    admin = await newAdmin(apps[0]!)
  })
  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()))
  })

  async function reservedOrders(productId: number, count: number) {
    const buyers = await Promise.all(Array.from({ length: count }, () => newCustomer(apps[0]!)))
    const orders: { buyer: TestUser; id: string }[] = []
    for (const buyer of buyers) {
      await fillCart(apps[0]!, buyer, [{ productId, quantity: 2 }])
      const response = await apps[0]!.inject({ method: 'POST', url: '/api/checkout', headers: buyer.headers })
      expect(response.statusCode).toBe(201)
      orders.push({ buyer, id: response.json<{ id: string }>().id })
    }
    return orders
  }

  /** Moves the orders' deadlines into the past, as if their reservation time had run out. */
  async function expireNow(orders: { id: string }[]) {
    await apps[0]!.db.primary.query(
      `UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = ANY($1::uuid[])`,
      [orders.map((o) => o.id)],
    )
  }

  it('when two sweepers run at once, every expired reservation is released exactly once', async () => {
    const productId = await newProduct(apps[0]!, admin, { stock: 40 })
    const orders = await reservedOrders(productId, 20)
    expect(await stockOf(apps[0]!, productId)).toEqual({ onHand: 40, available: 0, reserved: 40, sold: 0 })

    await expireNow(orders)
    // Small batches make the two sweepers interleave over many transactions.
    const sweep = (app: FastifyInstance) =>
      sweepExpiredReservations(app.db.primary, app.metrics, releaseHooksOf(app), 3)
    await Promise.all(
      apps.map(async (app) => [await sweep(app), await sweep(app), await sweep(app), await sweep(app)]),
    )
    // The test stack's own jobs process may sweep some of these too, and may still be committing them
    // when ours are done (ours skip the rows it holds): wait until every order is expired, whichever
    // sweeper did it. What matters is that each one's stock was released exactly once.
    await waitFor('every order to be expired', async () => {
      const { rows } = await apps[0]!.db.primary.query<{ status: string }>(
        'SELECT status FROM orders WHERE id = ANY($1::uuid[])',
        [orders.map((o) => o.id)],
      )
      return rows.length === orders.length && rows.every((r) => r.status === 'expired')
    })
    // Released twice, available would be 80 and break the stock-conservation CHECK; here it is exact.
    expect(await stockOf(apps[0]!, productId)).toEqual({ onHand: 40, available: 40, reserved: 0, sold: 0 })
    await sweep(apps[0]!)
    expect(await stockOf(apps[0]!, productId)).toEqual({ onHand: 40, available: 40, reserved: 0, sold: 0 })
  })

  it('when an order expired, then paying it answers 409 ORDER_EXPIRED, before and after the sweep', async () => {
    const productId = await newProduct(apps[0]!, admin, { stock: 2 })
    const [order] = await reservedOrders(productId, 1)
    await expireNow([order!])
    const pay = () =>
      apps[1]!.inject({ method: 'POST', url: `/api/orders/${order!.id}/pay`, headers: order!.buyer.headers })

    const beforeSweep = await pay()
    expect(beforeSweep.statusCode).toBe(409)
    expect(beforeSweep.json()).toMatchObject({ code: 'ORDER_EXPIRED' })

    await sweepExpiredReservations(apps[0]!.db.primary, apps[0]!.metrics, releaseHooksOf(apps[0]!))
    const afterSweep = await pay()
    expect(afterSweep.statusCode).toBe(409)
    expect(afterSweep.json()).toMatchObject({ code: 'ORDER_EXPIRED' })
    expect(await stockOf(apps[0]!, productId)).toEqual({ onHand: 2, available: 2, reserved: 0, sold: 0 })
  })

  it('when the planner joins by nested loops (statistics from a quiet moment), then a sweep still expires one batch', async () => {
    const productId = await newProduct(apps[0]!, admin, { stock: 16 })
    const orders = await reservedOrders(productId, 8)
    const client = await apps[0]!.db.primary.connect()
    try {
      await client.query('BEGIN')
      // Due only inside this transaction, so the test stack's own sweeper cannot take them meanwhile.
      await client.query(
        `UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = ANY($1::uuid[])`,
        [orders.map((o) => o.id)],
      )
      // The plan that statistics taken while no order was reserved lead to: the reserved orders scanned
      // in a nested loop, the locking subquery run again for each (no hash, merge, material or unique step).
      // The old statement then expired every due order, not one batch (and, with thousands, took 14 s).
      await client.query('SET LOCAL enable_hashjoin = off')
      await client.query('SET LOCAL enable_mergejoin = off')
      await client.query('SET LOCAL enable_material = off')
      await client.query('SET LOCAL enable_hashagg = off')
      await client.query('SET LOCAL enable_sort = off')
      const expired = await expireDueOrders(client, 3)
      expect(expired).toHaveLength(3)
    } finally {
      await client.query('ROLLBACK')
      client.release()
    }
  })

  it('when an order is paid, then the sweeper never releases it', async () => {
    const app = await buildTestApp({ RESERVATION_TTL_SECONDS: '2' })
    try {
      const productId = await newProduct(app, admin, { stock: 2 })
      const buyer = await newCustomer(app)
      await fillCart(app, buyer, [{ productId, quantity: 2 }])
      const order = (
        await app.inject({ method: 'POST', url: '/api/checkout', headers: buyer.headers })
      ).json<{ id: string }>()
      const paid = await app.inject({
        method: 'POST',
        url: `/api/orders/${order.id}/pay`,
        headers: buyer.headers,
      })
      expect(paid.statusCode).toBe(200)
      await sleep(2100)
      await sweepExpiredReservations(app.db.primary, app.metrics, releaseHooksOf(app))
      expect(await stockOf(app, productId)).toEqual({ onHand: 2, available: 0, reserved: 0, sold: 2 })
    } finally {
      await app.close()
    }
  })
})
