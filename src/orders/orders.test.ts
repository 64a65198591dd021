import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  buildTestApp,
  fillCart,
  newAdmin,
  newCustomer,
  newProduct,
  stockOf,
  type TestUser,
} from '../../test/support/app.js'

interface OrderBody {
  id: string
  userId: string
  status: string
  totalCents: number
  expiresAt: string
  items: { productId: number; quantity: number; unitPriceCents: number }[]
}

const checkout = (app: FastifyInstance, user: TestUser) =>
  app.inject({ method: 'POST', url: '/api/checkout', headers: user.headers })
const pay = (app: FastifyInstance, user: TestUser, orderId: string) =>
  app.inject({ method: 'POST', url: `/api/orders/${orderId}/pay`, headers: user.headers })
const cancel = (app: FastifyInstance, user: TestUser, orderId: string) =>
  app.inject({ method: 'POST', url: `/api/orders/${orderId}/cancel`, headers: user.headers })

/** A customer with a reserved order for `quantity` units of a fresh product. */
async function reservedOrder(app: FastifyInstance, admin: TestUser, quantity = 2) {
  const customer = await newCustomer(app)
  const productId = await newProduct(app, admin, { stock: 10, priceCents: 700 })
  await fillCart(app, customer, [{ productId, quantity }])
  const response = await checkout(app, customer)
  if (response.statusCode !== 201) throw new Error(`checkout failed: ${response.body}`)
  return { customer, productId, order: response.json<OrderBody>() }
}

describe('orders', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp()
    admin = await newAdmin(app)
  })

  afterAll(async () => {
    await app.close()
  })

  it('when the cart is empty, then checkout is 409 CART_EMPTY', async () => {
    const customer = await newCustomer(app)

    const response = await checkout(app, customer)

    expect(response.statusCode).toBe(409)
    expect(response.json()).toMatchObject({ code: 'CART_EMPTY' })
  })

  it('when a cart is checked out, then a reserved order at server prices exists, the cart is empty and stock moved to reserved', async () => {
    const customer = await newCustomer(app)
    const [a, b] = [
      await newProduct(app, admin, { stock: 10, priceCents: 1250 }),
      await newProduct(app, admin, { stock: 4, priceCents: 99 }),
    ]
    await fillCart(app, customer, [
      { productId: a, quantity: 3 },
      { productId: b, quantity: 4 },
    ])
    // The price changes after the cart was filled: the order must use the price at checkout.
    const repriced = await app.inject({
      method: 'PUT',
      url: `/api/admin/products/${a}/price`,
      headers: admin.headers,
      payload: { priceCents: 1300 },
    })
    expect(repriced.statusCode).toBe(200)

    const response = await checkout(app, customer)

    expect(response.statusCode).toBe(201)
    const order = response.json<OrderBody>()
    expect(order).toMatchObject({ status: 'reserved', userId: customer.id, totalCents: 3 * 1300 + 4 * 99 })
    expect(order.items).toEqual([
      { productId: a, quantity: 3, unitPriceCents: 1300 },
      { productId: b, quantity: 4, unitPriceCents: 99 },
    ])
    const ttlMs = app.config.RESERVATION_TTL_SECONDS * 1000
    expect(Math.abs(Date.parse(order.expiresAt) - (Date.now() + ttlMs))).toBeLessThan(60_000)

    const cart = await app.inject({ url: '/api/cart', headers: customer.headers })
    expect(cart.json()).toMatchObject({ items: [], totalCents: 0 })
    expect(await stockOf(app, a)).toEqual({ onHand: 10, available: 7, reserved: 3, sold: 0 })
    expect(await stockOf(app, b)).toEqual({ onHand: 4, available: 0, reserved: 4, sold: 0 })

    const fetched = await app.inject({ url: `/api/orders/${order.id}`, headers: customer.headers })
    expect(fetched.json()).toMatchObject({ id: order.id, status: 'reserved' })
  })

  it('when a cart asks for more than is available, then checkout is 409 OUT_OF_STOCK and nothing moves', async () => {
    const customer = await newCustomer(app)
    const productId = await newProduct(app, admin, { stock: 2 })
    await fillCart(app, customer, [{ productId, quantity: 3 }])

    const response = await checkout(app, customer)

    expect(response.statusCode).toBe(409)
    expect(response.json()).toMatchObject({ code: 'OUT_OF_STOCK' })
    expect(await stockOf(app, productId)).toEqual({ onHand: 2, available: 2, reserved: 0, sold: 0 })
    const cart = await app.inject({ url: '/api/cart', headers: customer.headers })
    expect(cart.json()).toMatchObject({ items: [{ productId, quantity: 3 }] })
  })

  it('when a cart totals more than an order can hold (2^31 - 1 cents), then checkout is 422 ORDER_TOO_LARGE and nothing moves', async () => {
    const customer = await newCustomer(app)
    const productId = await newProduct(app, admin, { stock: 100, priceCents: 100_000_000 })
    await fillCart(app, customer, [{ productId, quantity: 22 }])
    const orders = async () =>
      (await app.db.primary.query('SELECT 1 FROM orders WHERE user_id = $1', [customer.id])).rowCount

    const response = await checkout(app, customer)

    expect(response.statusCode).toBe(422)
    expect(response.json()).toMatchObject({ code: 'ORDER_TOO_LARGE' })
    expect(await stockOf(app, productId)).toEqual({ onHand: 100, available: 100, reserved: 0, sold: 0 })
    expect(await orders()).toBe(0)
    const cart = await app.inject({ url: '/api/cart', headers: customer.headers })
    expect(cart.json()).toMatchObject({ items: [{ productId, quantity: 22 }], totalCents: 2_200_000_000 })
  })

  it('when a reserved order is paid, then it is 200 paid and its units move from reserved to sold', async () => {
    const { customer, productId, order } = await reservedOrder(app, admin, 2)

    const response = await pay(app, customer, order.id)

    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({ id: order.id, status: 'paid', paidAt: expect.any(String) })
    expect(await stockOf(app, productId)).toEqual({ onHand: 10, available: 8, reserved: 0, sold: 2 })
  })

  it('when a reserved order is cancelled twice, then its stock comes back exactly once', async () => {
    const { customer, productId, order } = await reservedOrder(app, admin, 3)

    const first = await cancel(app, customer, order.id)
    const second = await cancel(app, customer, order.id)

    expect(first.statusCode).toBe(200)
    expect(first.json()).toMatchObject({ status: 'cancelled' })
    expect(second.statusCode).toBe(200)
    expect(second.json()).toMatchObject({ status: 'cancelled' })
    expect(await stockOf(app, productId)).toEqual({ onHand: 10, available: 10, reserved: 0, sold: 0 })
  })

  it('when a paid order is cancelled, then it is 409 ORDER_NOT_CANCELLABLE and the sale stands', async () => {
    const { customer, productId, order } = await reservedOrder(app, admin, 1)
    expect((await pay(app, customer, order.id)).statusCode).toBe(200)

    const response = await cancel(app, customer, order.id)

    expect(response.statusCode).toBe(409)
    expect(response.json()).toMatchObject({ code: 'ORDER_NOT_CANCELLABLE' })
    expect(await stockOf(app, productId)).toEqual({ onHand: 10, available: 9, reserved: 0, sold: 1 })
  })

  it('when a cancelled order is paid, then it is 409 ORDER_NOT_PAYABLE and no stock is sold', async () => {
    const { customer, productId, order } = await reservedOrder(app, admin, 1)
    expect((await cancel(app, customer, order.id)).statusCode).toBe(200)

    const response = await pay(app, customer, order.id)

    expect(response.statusCode).toBe(409)
    expect(response.json()).toMatchObject({ code: 'ORDER_NOT_PAYABLE' })
    expect(await stockOf(app, productId)).toEqual({ onHand: 10, available: 10, reserved: 0, sold: 0 })
  })

  it('when a paid order is paid again, then it is 409 ORDER_NOT_PAYABLE and nothing is sold twice', async () => {
    const { customer, productId, order } = await reservedOrder(app, admin, 1)
    expect((await pay(app, customer, order.id)).statusCode).toBe(200)

    const response = await pay(app, customer, order.id)

    expect(response.statusCode).toBe(409)
    expect(response.json()).toMatchObject({ code: 'ORDER_NOT_PAYABLE' })
    expect(await stockOf(app, productId)).toEqual({ onHand: 10, available: 9, reserved: 0, sold: 1 })
  })

  describe('when the payment provider declines', () => {
    let declining: FastifyInstance

    beforeAll(async () => {
      declining = await buildTestApp({ PAYMENT_FAILURE_RATE: '1' })
    })

    afterAll(async () => {
      await declining.close()
    })

    it('when the payment is declined, then it is 402 PAYMENT_DECLINED and the order stays reserved', async () => {
      const { customer, productId, order } = await reservedOrder(declining, admin, 2)

      const response = await pay(declining, customer, order.id)

      expect(response.statusCode).toBe(402)
      expect(response.json()).toMatchObject({ code: 'PAYMENT_DECLINED' })
      const fetched = await declining.inject({ url: `/api/orders/${order.id}`, headers: customer.headers })
      expect(fetched.json()).toMatchObject({ status: 'reserved', paidAt: null })
      expect(await stockOf(declining, productId)).toEqual({ onHand: 10, available: 8, reserved: 2, sold: 0 })
    })
  })

  it('when another customer asks for an order, then GET, pay and cancel are 404 and their list omits it; an admin sees it', async () => {
    const { customer: owner, productId, order } = await reservedOrder(app, admin, 1)
    const stranger = await newCustomer(app)

    const answers = [
      await app.inject({ url: `/api/orders/${order.id}`, headers: stranger.headers }),
      await pay(app, stranger, order.id),
      await cancel(app, stranger, order.id),
    ]

    for (const response of answers) {
      expect(response.statusCode).toBe(404)
      expect(response.json()).toMatchObject({ code: 'NOT_FOUND' })
    }
    const strangersList = await app.inject({ url: '/api/orders', headers: stranger.headers })
    expect(strangersList.json<{ items: OrderBody[] }>().items.map((o) => o.id)).not.toContain(order.id)
    const ownersList = await app.inject({ url: '/api/orders', headers: owner.headers })
    expect(ownersList.json<{ items: OrderBody[] }>().items.map((o) => o.id)).toContain(order.id)
    const asAdmin = await app.inject({ url: `/api/orders/${order.id}`, headers: admin.headers })
    expect(asAdmin.statusCode).toBe(200)
    expect(asAdmin.json()).toMatchObject({ id: order.id, userId: owner.id, status: 'reserved' })
    expect(await stockOf(app, productId)).toEqual({ onHand: 10, available: 9, reserved: 1, sold: 0 })
  })

  it('when an order id is unknown or not a UUID, then it is 404 or 400', async () => {
    const customer = await newCustomer(app)

    const unknown = await app.inject({
      url: '/api/orders/00000000-0000-4000-8000-000000000000',
      headers: customer.headers,
    })
    const malformed = await app.inject({ url: '/api/orders/not-a-uuid', headers: customer.headers })

    expect(unknown.statusCode).toBe(404)
    expect(malformed.statusCode).toBe(400)
  })

  it('when one cart is checked out twice at once (a double click), then exactly one order is made and the other is 409 CART_EMPTY', async () => {
    const customer = await newCustomer(app)
    const productId = await newProduct(app, admin, { stock: 10 })
    await fillCart(app, customer, [{ productId, quantity: 2 }])

    const answers = await Promise.all([checkout(app, customer), checkout(app, customer)])

    expect(answers.map((a) => a.statusCode).sort()).toEqual([201, 409])
    expect(answers.find((a) => a.statusCode === 409)!.json()).toMatchObject({ code: 'CART_EMPTY' })
    const list = await app.inject({ url: '/api/orders', headers: customer.headers })
    expect(list.json<{ items: OrderBody[] }>().items).toHaveLength(1)
    expect(await stockOf(app, productId)).toEqual({ onHand: 10, available: 8, reserved: 2, sold: 0 })
  })
})
