import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { waitFor } from '../../scripts/stack/process.js'
import { sweepExpiredReservations } from '../orders/expiry-sweeper.js'
import {
  auditOf,
  buildTestApp,
  newAdmin,
  newCustomer,
  newRegisteredCustomer,
  newSale,
  releaseHooksOf,
  type TestUser,
} from '../../test/support/app.js'
import { openStream } from '../../test/support/streams.js'

// What a flash sale does against throwaway accounts and against clients that hoard connections.

// A buyer who cancels and buys again just before each expiry would hold a unit for ever: the unit is
// back on offer only for the instant between the two requests, which the buyer alone chooses. So a
// cancelled order's units keep counting toward the per-user limit; only an expiry gives them back.
describe.each(['redis-gate', 'atomic'])('cancel and buy again (%s)', (strategy) => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp({ STOCK_STRATEGY: strategy })
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await app.close()
  })

  const purchase = (saleId: number, user: TestUser) =>
    app.inject({
      method: 'POST',
      url: `/api/sales/${saleId}/purchase`,
      headers: { ...user.headers, 'idempotency-key': `key-${Math.random()}` },
      payload: { quantity: 1 },
    })
  const cancel = (orderId: string, user: TestUser) =>
    app.inject({ method: 'POST', url: `/api/orders/${orderId}/cancel`, headers: user.headers })

  it('when a buyer cancels a sale order and buys again at once, then the unit is back on offer for others but the buyer hears 409 PER_USER_LIMIT', async () => {
    const saleId = await newSale(app, admin, { units: 1, perUserLimit: 1 })
    const [hoarder, other] = [await newCustomer(app), await newCustomer(app)]
    const first = await purchase(saleId, hoarder)
    expect(first.statusCode, first.body).toBe(201)

    expect((await cancel(first.json<{ id: string }>().id, hoarder)).statusCode).toBe(200)
    const again = await purchase(saleId, hoarder)

    expect(again.statusCode, again.body).toBe(409)
    expect(again.json()).toMatchObject({ code: 'PER_USER_LIMIT' })
    expect(again.headers['retry-after']).toBeUndefined()
    expect((await purchase(saleId, other)).statusCode).toBe(201)
    expect(await auditOf(app, admin, saleId)).toMatchObject({ reserved: 1, violations: [] })
  })

  it('when a reservation expires instead, then its units count no more and the buyer may buy again', async () => {
    const saleId = await newSale(app, admin, { units: 1, perUserLimit: 1 })
    const buyer = await newCustomer(app)
    const first = await purchase(saleId, buyer)
    expect(first.statusCode, first.body).toBe(201)
    const orderId = first.json<{ id: string }>().id
    await app.db.primary.query(`UPDATE orders SET expires_at = now() - interval '1 second' WHERE id = $1`, [
      orderId,
    ])

    // The test stack's jobs process sweeps too: whichever of them expires the order, its units come back.
    await sweepExpiredReservations(app.db.primary, app.metrics, releaseHooksOf(app))
    let again = await purchase(saleId, buyer)
    await waitFor('the expired order to give its units back', async () => {
      if (again.statusCode === 201) return true
      again = await purchase(saleId, buyer)
      return again.statusCode === 201
    })
    expect(again.statusCode, again.body).toBe(201)
  })
})

describe.each(['redis-gate', 'atomic'])('a registered-only sale (%s)', (strategy) => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp({ STOCK_STRATEGY: strategy })
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await app.close()
  })

  const purchase = (saleId: number, user: TestUser) =>
    app.inject({
      method: 'POST',
      url: `/api/sales/${saleId}/purchase`,
      headers: { ...user.headers, 'idempotency-key': `key-${Math.random()}` },
      payload: { quantity: 1 },
    })

  it('when guests try to buy it, then each is 403 REGISTERED_ONLY and no unit leaves the sale; a registered account buys', async () => {
    const saleId = await newSale(app, admin, { units: 3, perUserLimit: 1, registeredOnly: true })
    const guests = await Promise.all(Array.from({ length: 5 }, () => newCustomer(app)))

    const answers = await Promise.all(guests.map((guest) => purchase(saleId, guest)))

    for (const response of answers) {
      expect(response.statusCode, response.body).toBe(403)
      expect(response.json()).toMatchObject({ code: 'REGISTERED_ONLY' })
    }
    expect(await auditOf(app, admin, saleId)).toMatchObject({ available: 3, reserved: 0, violations: [] })
    const registered = await newRegisteredCustomer(app)
    expect((await purchase(saleId, registered)).statusCode).toBe(201)
  })

  it('when a sale is read, then it says whether guests may buy', async () => {
    const closed = await newSale(app, admin, { units: 1, registeredOnly: true })
    const open = await newSale(app, admin, { units: 1 })
    expect((await app.inject({ url: `/api/sales/${closed}` })).json()).toMatchObject({ registeredOnly: true })
    expect((await app.inject({ url: `/api/sales/${open}` })).json()).toMatchObject({ registeredOnly: false })
    const guest = await newCustomer(app)
    expect((await purchase(open, guest)).statusCode).toBe(201)
  })
})

describe('live-event streams per worker', () => {
  let app: FastifyInstance
  let address: string

  beforeAll(async () => {
    app = await buildTestApp({ SSE_MAX_STREAMS_PER_WORKER: '2' })
    address = await app.listen({ host: '127.0.0.1', port: 0 })
  })
  afterAll(async () => {
    await app.close()
  })

  it('when a worker holds SSE_MAX_STREAMS_PER_WORKER streams, then the next is 503 TOO_MANY_STREAMS with Retry-After, and a closed one frees a place', async () => {
    const admin = await newAdmin(app)
    const saleId = await newSale(app, admin, { units: 1 })
    const open = () => openStream(`${address}/api/sales/${saleId}/events`)
    const first = await open()
    const second = await open()
    expect([first.status, second.status]).toEqual([200, 200])

    const third = await open()
    expect(third.status).toBe(503)
    expect(JSON.parse(await third.body)).toMatchObject({ code: 'TOO_MANY_STREAMS' })
    expect(Number(third.headers['retry-after'])).toBeGreaterThanOrEqual(1)

    first.close()
    // The worker sees the hang-up a moment later.
    let again = await open()
    for (let i = 0; i < 20 && again.status !== 200; i++) {
      await again.body
      await new Promise((resolve) => setTimeout(resolve, 50))
      again = await open()
    }
    expect(again.status).toBe(200)
    second.close()
    again.close()
  })

  it('when a stream of several sales is open, then it counts once against the cap', async () => {
    const admin = await newAdmin(app)
    const ids = [
      await newSale(app, admin, { units: 1 }),
      await newSale(app, admin, { units: 1 }),
      await newSale(app, admin, { units: 1 }),
    ]
    // The previous test's hang-ups may not have reached the worker yet.
    let several = await openStream(`${address}/api/sales/events?ids=${ids.join(',')}`)
    for (let i = 0; i < 20 && several.status !== 200; i++) {
      await several.body
      await new Promise((resolve) => setTimeout(resolve, 50))
      several = await openStream(`${address}/api/sales/events?ids=${ids.join(',')}`)
    }
    const one = await openStream(`${address}/api/sales/${ids[0]}/events`)
    expect([several.status, one.status]).toEqual([200, 200])
    const refused = await openStream(`${address}/api/sales/events?ids=${ids[1]}`)
    expect(refused.status).toBe(503)
    await refused.body
    several.close()
    one.close()
  })
})
