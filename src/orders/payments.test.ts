import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  buildTestApp,
  fillCart,
  newAdmin,
  newCustomer,
  newProduct,
  type TestUser,
} from '../../test/support/app.js'
import { waitFor } from '../../scripts/stack/process.js'
import { createSimulatedPaymentProvider } from './payment-provider.js'
import { sellReserved } from '../stock/stock.repository.js'
import { stockOf } from './order-release.js'
import { findOrder, markPaidIfStillReserved } from './orders.repository.js'
import { recordCharge } from './payments.repository.js'
import { refundUnusableCharges } from './refunds.js'
import { blockedSessions } from '../../test/support/locks.js'

const pay = (app: FastifyInstance, user: TestUser, orderId: string, key?: string) =>
  app.inject({
    method: 'POST',
    url: `/api/orders/${orderId}/pay`,
    headers: { ...user.headers, ...(key ? { 'idempotency-key': key } : {}) },
  })

/** A customer with a reserved order of a fresh product. */
async function reservedOrder(app: FastifyInstance, admin: TestUser) {
  const customer = await newCustomer(app)
  const productId = await newProduct(app, admin, { stock: 10, priceCents: 700 })
  await fillCart(app, customer, [{ productId, quantity: 1 }])
  const response = await app.inject({ method: 'POST', url: '/api/checkout', headers: customer.headers })
  if (response.statusCode !== 201) throw new Error(`checkout failed: ${response.body}`)
  return { customer, orderId: response.json<{ id: string }>().id }
}

/** What the provider's ledger and the shop's hold for an order: charges made, refunded, recorded. */
async function ledgersOf(app: FastifyInstance, orderId: string) {
  const { rows } = await app.db.primary.query<{
    charges: number
    refunded: number
    recorded: number
    recorded_refunds: number
  }>(
    `SELECT (SELECT count(*)::int FROM simulated_payment_charges WHERE key = $1::text AND charged) AS charges,
            (SELECT count(*)::int FROM simulated_payment_charges WHERE key = $1::text AND refunded) AS refunded,
            (SELECT count(*)::int FROM payments WHERE order_id = $1::uuid) AS recorded,
            (SELECT count(*)::int FROM payments WHERE order_id = $1::uuid AND refunded_at IS NOT NULL) AS recorded_refunds`,
    [orderId],
  )
  return rows[0]!
}

describe('payments: one charge per order, and a refund for a charge the order cannot use', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    // A slow provider, so that two pays of one order overlap.
    app = await buildTestApp({ PAYMENT_LATENCY_MS: '400' })
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await app.close()
  })

  it('when one order is paid twice at once, then the provider charges it once and both answers are the paid order', async () => {
    const { customer, orderId } = await reservedOrder(app, admin)

    const answers = await Promise.all([pay(app, customer, orderId), pay(app, customer, orderId)])

    expect(answers.map((a) => a.statusCode)).toEqual([200, 200])
    expect(answers.map((a) => a.json<{ status: string }>().status)).toEqual(['paid', 'paid'])
    expect(await ledgersOf(app, orderId)).toEqual({
      charges: 1,
      refunded: 0,
      recorded: 1,
      recorded_refunds: 0,
    })
  })

  it('when a keyed pay is sent again after its key lock lapsed during the slow charge, then the order is charged once, and the key replays the paid order afterwards', async () => {
    const { customer, orderId } = await reservedOrder(app, admin)
    const first = pay(app, customer, orderId, 'pay-once')
    // The first is inside its charge: its lock in Redis lapses (as after LOCK_TTL_MS), and the client,
    // having heard nothing, sends the same key again.
    await waitFor(
      'the first pay to hold its key',
      async () => (await app.redis.exists(`idem:{${customer.id}}:pay-once`)) === 1,
      5000,
    )
    await app.redis.del(`idem:{${customer.id}}:pay-once`)
    const second = pay(app, customer, orderId, 'pay-once')

    const answers = await Promise.all([first, second])

    expect(answers.map((a) => a.statusCode)).toEqual([200, 200])
    expect(await ledgersOf(app, orderId)).toEqual({
      charges: 1,
      refunded: 0,
      recorded: 1,
      recorded_refunds: 0,
    })
    const again = await pay(app, customer, orderId, 'pay-once')
    expect(again.statusCode).toBe(200)
    expect(again.json<{ status: string }>().status).toBe('paid')
  })

  it('when the order expires while its charge runs, then the buyer hears ORDER_EXPIRED and the charge is refunded and recorded', async () => {
    const slow = await buildTestApp({ PAYMENT_LATENCY_MS: '1500', RESERVATION_TTL_SECONDS: '1' })
    try {
      const { customer, orderId } = await reservedOrder(slow, await newAdmin(slow))

      const answer = await pay(slow, customer, orderId)

      expect(answer.statusCode).toBe(409)
      expect(answer.json<{ code: string }>().code).toBe('ORDER_EXPIRED')
      expect(await ledgersOf(slow, orderId)).toEqual({
        charges: 1,
        refunded: 1,
        recorded: 1,
        recorded_refunds: 1,
      })
    } finally {
      await slow.close()
    }
  })

  it('when one pay marks the order paid while the reservation holds and another, charged meanwhile, finds it expired before the first commits, then the second answers the paid order and the charge is kept, not refunded', async () => {
    // A charge that takes 2 s, against a reservation with 1.5 s left.
    const slow = await buildTestApp({ PAYMENT_LATENCY_MS: '2000' })
    const first = await slow.db.primary.connect()
    try {
      const { customer, orderId } = await reservedOrder(slow, await newAdmin(slow))
      await slow.db.primary.query(
        `UPDATE orders SET expires_at = now() + interval '1.5 seconds' WHERE id = $1`,
        [orderId],
      )
      const payments = createSimulatedPaymentProvider({ db: slow.db.primary, latencyMs: 0, failureRate: 0 })
      expect(await payments.charge(orderId, 700)).toBe(true)
      // The first pay, as pay() does it: its UPDATE runs while the reservation holds; its COMMIT waits.
      await first.query('BEGIN')
      expect(await markPaidIfStillReserved(first, orderId)).toBe(true)
      const { stock, lines } = stockOf((await findOrder(first, orderId))!)
      await sellReserved(first, stock, lines)
      // The second pay starts while the reservation holds, and reaches its UPDATE after it ran out.
      const second = pay(slow, customer, orderId)
      const waitsOrAnswers = await Promise.race([
        second.then(() => 'answered'),
        waitFor(
          'the second pay to wait for the first',
          async () => (await blockedSessions(slow.db.primary, '%FOR UPDATE OF o%')) > 0,
          10_000,
        ).then(() => 'waits'),
      ])
      expect(waitsOrAnswers).toBe('waits')
      await first.query('COMMIT')
      const answer = await second
      expect(answer.statusCode).toBe(200)
      expect(answer.json<{ status: string }>().status).toBe('paid')
      expect(await ledgersOf(slow, orderId)).toMatchObject({ charges: 1, refunded: 0, recorded_refunds: 0 })
    } finally {
      first.release()
      await slow.close()
    }
  })

  it('when an order was charged but never marked paid and then cancelled, then the jobs round refunds the charge once', async () => {
    const { customer, orderId } = await reservedOrder(app, admin)
    const payments = createSimulatedPaymentProvider({ db: app.db.primary, latencyMs: 0, failureRate: 0 })
    // A pay whose transaction failed after the charge, and a buyer who then cancelled the order.
    expect(await payments.charge(orderId, 700)).toBe(true)
    await recordCharge(app.db.primary, orderId, 700)
    const cancelled = await app.inject({
      method: 'POST',
      url: `/api/orders/${orderId}/cancel`,
      headers: customer.headers,
    })
    expect(cancelled.statusCode).toBe(200)

    await refundUnusableCharges(app.db.primary, payments, 1000)
    await refundUnusableCharges(app.db.primary, payments, 1000)

    expect(await ledgersOf(app, orderId)).toEqual({
      charges: 1,
      refunded: 1,
      recorded: 1,
      recorded_refunds: 1,
    })
  })
})
