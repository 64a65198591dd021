import { randomUUID } from 'node:crypto'
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
  status: string
}

const checkout = (app: FastifyInstance, user: TestUser, key: string) =>
  app.inject({ method: 'POST', url: '/api/checkout', headers: { ...user.headers, 'idempotency-key': key } })
const pay = (app: FastifyInstance, user: TestUser, orderId: string, key: string) =>
  app.inject({
    method: 'POST',
    url: `/api/orders/${orderId}/pay`,
    headers: { ...user.headers, 'idempotency-key': key },
  })

async function ordersOf(app: FastifyInstance, user: TestUser): Promise<number> {
  const { rows } = await app.db.primary.query<{ count: number }>(
    'SELECT count(*) AS count FROM orders WHERE user_id = $1',
    [user.id],
  )
  return rows[0]!.count
}

describe('Idempotency-Key', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp()
    admin = await newAdmin(app)
  })

  afterAll(async () => {
    await app.close()
  })

  /** Fills the customer's cart with a fresh product and checks it out (without a key). */
  async function reservedOrderOf(customer: TestUser, on: FastifyInstance = app): Promise<OrderBody> {
    const productId = await newProduct(on, admin, { stock: 10 })
    await fillCart(on, customer, [{ productId, quantity: 1 }])
    const response = await on.inject({ method: 'POST', url: '/api/checkout', headers: customer.headers })
    if (response.statusCode !== 201) throw new Error(`checkout failed: ${response.body}`)
    return response.json<OrderBody>()
  }

  /** The customer's checkout of one unit of a fresh product, with a new key, answered 201. */
  async function keyedCheckoutOf(customer: TestUser) {
    const productId = await newProduct(app, admin, { stock: 10 })
    await fillCart(app, customer, [{ productId, quantity: 1 }])
    const key = randomUUID()
    const first = await checkout(app, customer, key)
    expect(first.statusCode).toBe(201)
    return { productId, key, first }
  }

  it('when a checkout is retried with the same key, then the same 201 order is replayed and only one order exists', async () => {
    const customer = await newCustomer(app)
    const productId = await newProduct(app, admin, { stock: 10 })
    await fillCart(app, customer, [{ productId, quantity: 2 }])
    const key = randomUUID()

    const first = await checkout(app, customer, key)
    const retry = await checkout(app, customer, key)

    expect(first.statusCode).toBe(201)
    expect(first.headers['idempotent-replayed']).toBeUndefined()
    expect(retry.statusCode).toBe(201)
    expect(retry.headers['idempotent-replayed']).toBe('true')
    expect(retry.json()).toEqual(first.json())
    expect(await ordersOf(app, customer)).toBe(1)
    expect(await stockOf(app, productId)).toEqual({ onHand: 10, available: 8, reserved: 2, sold: 0 })
  })

  it('when a keyed checkout is double-clicked, then exactly one order exists and both answers name it or say the key is busy', async () => {
    const customer = await newCustomer(app)
    const productId = await newProduct(app, admin, { stock: 10 })
    await fillCart(app, customer, [{ productId, quantity: 1 }])
    const key = randomUUID()

    const answers = await Promise.all([checkout(app, customer, key), checkout(app, customer, key)])

    const created = answers.filter((a) => a.statusCode === 201)
    const busy = answers.filter((a) => a.statusCode === 409)
    expect(created.length).toBeGreaterThanOrEqual(1)
    expect(created.length + busy.length).toBe(2)
    for (const response of busy) expect(response.json()).toMatchObject({ code: 'IDEMPOTENCY_KEY_IN_USE' })
    expect(new Set(created.map((a) => a.json<OrderBody>().id)).size).toBe(1)
    expect(await ordersOf(app, customer)).toBe(1)
    expect(await stockOf(app, productId)).toMatchObject({ available: 9, reserved: 1 })
  })

  describe('with a slow payment provider', () => {
    let slow: FastifyInstance

    beforeAll(async () => {
      slow = await buildTestApp({ PAYMENT_LATENCY_MS: '400' })
    })

    afterAll(async () => {
      await slow.close()
    })

    it('when the same key arrives while the first request is still running, then the second is 409 IDEMPOTENCY_KEY_IN_USE', async () => {
      const customer = await newCustomer(slow)
      const order = await reservedOrderOf(customer, slow)
      const key = randomUUID()

      const answers = await Promise.all([
        pay(slow, customer, order.id, key),
        pay(slow, customer, order.id, key),
      ])

      expect(answers.map((a) => a.statusCode).sort()).toEqual([200, 409])
      expect(answers.find((a) => a.statusCode === 409)!.json()).toMatchObject({
        code: 'IDEMPOTENCY_KEY_IN_USE',
      })
      const retry = await pay(slow, customer, order.id, key)
      expect(retry.statusCode).toBe(200)
      expect(retry.headers['idempotent-replayed']).toBe('true')
      expect(retry.json()).toMatchObject({ id: order.id, status: 'paid' })
    })
  })

  it('when a key is reused for a different request, then it is 422 IDEMPOTENCY_KEY_REUSED and the second order stays unpaid', async () => {
    const customer = await newCustomer(app)
    const orderA = await reservedOrderOf(customer)
    const orderB = await reservedOrderOf(customer)
    const key = randomUUID()
    expect((await pay(app, customer, orderA.id, key)).statusCode).toBe(200)

    const response = await pay(app, customer, orderB.id, key)

    expect(response.statusCode).toBe(422)
    expect(response.json()).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' })
    const b = await app.inject({ url: `/api/orders/${orderB.id}`, headers: customer.headers })
    expect(b.json()).toMatchObject({ status: 'reserved' })
  })

  it('when two users send the same key, then each gets their own order (keys are scoped per user)', async () => {
    const [alice, bob] = [await newCustomer(app), await newCustomer(app)]
    const productId = await newProduct(app, admin, { stock: 10 })
    await fillCart(app, alice, [{ productId, quantity: 1 }])
    await fillCart(app, bob, [{ productId, quantity: 1 }])
    const key = randomUUID()

    const forAlice = await checkout(app, alice, key)
    const forBob = await checkout(app, bob, key)

    expect(forAlice.statusCode).toBe(201)
    expect(forBob.statusCode).toBe(201)
    expect(forBob.headers['idempotent-replayed']).toBeUndefined()
    expect(forBob.json<OrderBody>().id).not.toBe(forAlice.json<OrderBody>().id)
    expect(await stockOf(app, productId)).toMatchObject({ available: 8, reserved: 2 })
  })

  it('when a request with a key fails validation, then nothing is stored and the key still works', async () => {
    const customer = await newCustomer(app)
    const order = await reservedOrderOf(customer)
    const key = randomUUID()

    const invalid = await pay(app, customer, 'not-a-uuid', key)
    const valid = await pay(app, customer, order.id, key)

    expect(invalid.statusCode).toBe(400)
    expect(valid.statusCode).toBe(200)
    expect(valid.headers['idempotent-replayed']).toBeUndefined()
    expect(valid.json()).toMatchObject({ id: order.id, status: 'paid' })
  })

  it('when a keyed checkout ends in 409 CART_EMPTY, then a retry replays the 409 with the header', async () => {
    const customer = await newCustomer(app)
    const key = randomUUID()

    const first = await checkout(app, customer, key)
    const retry = await checkout(app, customer, key)

    expect(first.statusCode).toBe(409)
    expect(first.json()).toMatchObject({ code: 'CART_EMPTY' })
    expect(retry.statusCode).toBe(409)
    expect(retry.headers['idempotent-replayed']).toBe('true')
    expect(retry.json()).toEqual(first.json())
  })

  it('when a key is older than 24 hours, then it is forgotten and the same key runs anew', async () => {
    const customer = await newCustomer(app)
    const { productId, key, first } = await keyedCheckoutOf(customer)
    // 24 hours pass: the Postgres record expires and so does the Redis copy.
    await app.db.primary.query(
      `UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE user_id = $1 AND key = $2`,
      [customer.id, key],
    )
    await app.redis.del(`idem:{${customer.id}}:${key}`)
    await fillCart(app, customer, [{ productId, quantity: 1 }])

    const again = await checkout(app, customer, key)

    expect(again.statusCode).toBe(201)
    expect(again.headers['idempotent-replayed']).toBeUndefined()
    expect(again.json<OrderBody>().id).not.toBe(first.json<OrderBody>().id)
    expect(await ordersOf(app, customer)).toBe(2)
  })

  it.each([
    ['filled again', true],
    ['empty now (not CART_EMPTY)', false],
  ])(
    'when Redis forgot a finished checkout and the cart is %s, then Postgres replays the same 201 order and no second order exists',
    async (_, refill) => {
      const customer = await newCustomer(app)
      const { productId, key, first } = await keyedCheckoutOf(customer)
      await app.redis.del(`idem:{${customer.id}}:${key}`)
      if (refill) await fillCart(app, customer, [{ productId, quantity: 1 }])

      const retry = await checkout(app, customer, key)

      expect(retry.statusCode).toBe(201)
      expect(retry.headers['idempotent-replayed']).toBe('true')
      expect(retry.json<OrderBody>().id).toBe(first.json<OrderBody>().id)
      expect(await ordersOf(app, customer)).toBe(1)
      expect(await stockOf(app, productId)).toMatchObject({ available: 9, reserved: 1 })
    },
  )

  it('when Redis forgot a finished payment, then the retry replays 200 and the paid order, not ORDER_NOT_PAYABLE', async () => {
    const customer = await newCustomer(app)
    const order = await reservedOrderOf(customer)
    const key = randomUUID()
    const first = await pay(app, customer, order.id, key)
    expect(first.statusCode).toBe(200)
    await app.redis.del(`idem:{${customer.id}}:${key}`)

    const retry = await pay(app, customer, order.id, key)

    expect(retry.statusCode).toBe(200)
    expect(retry.headers['idempotent-replayed']).toBe('true')
    expect(retry.json()).toEqual(first.json())
    expect(retry.json<OrderBody>().status).toBe('paid')
  })

  it('when the key is longer than 255 characters or not visible ASCII, then it is 400 and nothing runs', async () => {
    const customer = await newCustomer(app)
    const productId = await newProduct(app, admin, { stock: 10 })
    await fillCart(app, customer, [{ productId, quantity: 1 }])

    for (const key of ['k'.repeat(256), 'has space']) {
      const response = await checkout(app, customer, key)
      expect(response.statusCode).toBe(400)
      expect(response.json()).toMatchObject({ code: 'INVALID_IDEMPOTENCY_KEY' })
    }
    expect(await ordersOf(app, customer)).toBe(0)
    expect((await checkout(app, customer, 'k'.repeat(255))).statusCode).toBe(201)
  })
})
