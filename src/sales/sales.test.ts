import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  auditOf,
  buildTestApp,
  newAdmin,
  newCustomer,
  newProduct,
  newSale,
  type TestUser,
} from '../../test/support/app.js'
import { listCurrentSales } from './sales.repository.js'
import { SALE_LIST_SIZE } from './sales.service.js'

interface SaleBody {
  id: number
  status: string
  remaining: number
  unitsTotal: number
}

describe('flash sales API', () => {
  let app: FastifyInstance
  let admin: TestUser
  let buyer: TestUser

  beforeAll(async () => {
    app = await buildTestApp({ STOCK_STRATEGY: 'redis-gate' })
    admin = await newAdmin(app)
    buyer = await newCustomer(app)
  })
  afterAll(async () => {
    await app.close()
  })

  const purchase = (saleId: number, user = buyer) =>
    app.inject({
      method: 'POST',
      url: `/api/sales/${saleId}/purchase`,
      headers: user.headers,
      payload: { quantity: 1 },
    })

  it('when a sale is created, its units leave the product stock and it shows as active with every unit remaining', async () => {
    const productId = await newProduct(app, admin, { stock: 30 })
    const created = await app.inject({
      method: 'POST',
      url: '/api/admin/sales',
      headers: admin.headers,
      payload: {
        productId,
        priceCents: 999,
        units: 10,
        perUserLimit: 2,
        startsAt: new Date(Date.now() - 1000).toISOString(),
        endsAt: new Date(Date.now() + 60_000).toISOString(),
      },
    })
    expect(created.statusCode).toBe(201)
    const sale = created.json<SaleBody>()
    expect(sale).toMatchObject({ status: 'active', remaining: 10, unitsTotal: 10 })
    const { rows } = await app.db.primary.query(
      'SELECT on_hand, available FROM inventory WHERE product_id = $1',
      [productId],
    )
    expect(rows[0]).toEqual({ on_hand: 20, available: 20 })
    expect((await app.inject({ url: `/api/sales/${sale.id}` })).json<SaleBody>()).toMatchObject({
      status: 'active',
    })
  })

  it('when a sale asks for more units than the product has, or ends before it starts, it is refused', async () => {
    const productId = await newProduct(app, admin, { stock: 5 })
    const base = { productId, priceCents: 1, startsAt: new Date(Date.now() + 1000).toISOString() }
    const tooMany = await app.inject({
      method: 'POST',
      url: '/api/admin/sales',
      headers: admin.headers,
      payload: { ...base, units: 6, endsAt: new Date(Date.now() + 60_000).toISOString() },
    })
    expect(tooMany.statusCode).toBe(409)
    expect(tooMany.json()).toMatchObject({ code: 'OUT_OF_STOCK' })
    const backwards = await app.inject({
      method: 'POST',
      url: '/api/admin/sales',
      headers: admin.headers,
      payload: { ...base, units: 1, endsAt: new Date(Date.now() - 60_000).toISOString() },
    })
    expect(backwards.statusCode).toBe(400)
    expect(backwards.json()).toMatchObject({ code: 'INVALID_SALE_WINDOW' })
    const byCustomer = await app.inject({
      method: 'POST',
      url: '/api/admin/sales',
      headers: buyer.headers,
      payload: {},
    })
    expect(byCustomer.statusCode).toBe(403)
  })

  it('when a sale has not started, it shows as upcoming and a purchase is 409 SALE_NOT_ACTIVE', async () => {
    const saleId = await newSale(app, admin, { units: 3, startsInMs: 60_000 })
    const sale = (await app.inject({ url: `/api/sales/${saleId}` })).json<SaleBody>()
    expect(sale).toMatchObject({ status: 'upcoming', remaining: 3 })
    expect((await app.inject({ url: '/api/sales' })).statusCode).toBe(200)
    const answer = await purchase(saleId)
    expect(answer.statusCode).toBe(409)
    expect(answer.json()).toMatchObject({ code: 'SALE_NOT_ACTIVE' })
  })

  it('when a sale does not exist, reading or buying it is 404', async () => {
    expect((await app.inject({ url: '/api/sales/999999999' })).statusCode).toBe(404)
    expect((await purchase(999999999)).statusCode).toBe(404)
  })

  it('when the last unit is sold, the sale shows sold_out and the audit reports no violation', async () => {
    const saleId = await newSale(app, admin, { units: 1 })
    expect((await purchase(saleId)).statusCode).toBe(201)
    const other = await newCustomer(app)
    const late = await purchase(saleId, other)
    expect(late.json()).toMatchObject({ code: 'SOLD_OUT' })
    // Fresh numbers (the page's remaining count may be up to 250 ms old).
    await new Promise((resolve) => setTimeout(resolve, 400))
    expect((await app.inject({ url: `/api/sales/${saleId}` })).json<SaleBody>()).toMatchObject({
      status: 'sold_out',
      remaining: 0,
    })
    expect(await auditOf(app, admin, saleId)).toMatchObject({
      initial: 1,
      available: 0,
      reserved: 1,
      gate: 0,
      drift: 0,
      oversold: false,
      violations: [],
    })
  })

  it('when a unit sells, the live event stream pushes the new remaining count', async () => {
    const saleId = await newSale(app, admin, { units: 5 })
    const address = await app.listen({ host: '127.0.0.1', port: 0 })
    const stream = await fetch(`${address}/api/sales/${saleId}/events`)
    expect(stream.headers.get('content-type')).toBe('text/event-stream')
    const nextEvent = eventReader(stream)

    expect(await nextEvent()).toMatchObject({ remaining: 5, taken: 0, status: 'active' })
    expect((await purchase(saleId)).statusCode).toBe(201)
    expect(await nextEvent()).toMatchObject({ remaining: 4, taken: 1, status: 'active' })
    await nextEvent.cancel()
  })

  it("when one stream is opened for several sales, then it sends each sale's numbers with its saleId and pushes a sale's change, and unknown ids are skipped", async () => {
    const [first, second] = [await newSale(app, admin, { units: 3 }), await newSale(app, admin, { units: 2 })]
    const address = await app.listen({ host: '127.0.0.1', port: 0 }).catch(() => addressOf(app))
    const stream = await fetch(`${address}/api/sales/events?ids=${first},${second},999999999`)
    expect(stream.status).toBe(200)
    expect(stream.headers.get('content-type')).toBe('text/event-stream')
    const next = eventReader(stream)

    const opening = [await next(), await next()]
    expect(opening).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ saleId: first, remaining: 3, taken: 0, status: 'active' }),
        expect.objectContaining({ saleId: second, remaining: 2, taken: 0, status: 'active' }),
      ]),
    )
    expect((await purchase(second)).statusCode).toBe(201)
    expect(await next()).toMatchObject({ saleId: second, remaining: 1, taken: 1 })
    await next.cancel()

    const none = await fetch(`${address}/api/sales/events?ids=999999998,999999999`)
    expect(none.status).toBe(404)
    expect((await fetch(`${address}/api/sales/events?ids=1,,2`)).status).toBe(400)
  })

  it('when a customer bought in a sale, then /api/sales/mine says how many units they hold there, and nobody else does', async () => {
    const saleId = await newSale(app, admin, { units: 5, perUserLimit: 2 })
    const other = await newSale(app, admin, { units: 5 })
    const shopper = await newCustomer(app)
    const mine = async (user: TestUser) =>
      (await app.inject({ url: `/api/sales/mine?ids=${saleId},${other}`, headers: user.headers })).json<{
        items: { saleId: number; units: number }[]
      }>()

    expect(await mine(shopper)).toEqual({ items: [] })
    expect((await purchase(saleId, shopper)).statusCode).toBe(201)
    expect(await mine(shopper)).toEqual({ items: [{ saleId, units: 1 }] })
    expect((await mine(await newCustomer(app))).items).toEqual([])
    expect((await app.inject({ url: `/api/sales/mine?ids=${saleId}` })).statusCode).toBe(401)
  })

  it('when live, upcoming and ended sales exist, then the sale list shows live ones first, then upcoming, then ended', async () => {
    const upcoming = await newSale(app, admin, { units: 1, startsInMs: 60_000 })
    const live = await newSale(app, admin, { units: 1 })
    const { items } = (await app.inject({ url: '/api/sales' })).json<{ items: SaleBody[] }>()
    const rank = { active: 0, sold_out: 0, upcoming: 1, ended: 2 } as Record<string, number>
    const ranks = items.map((sale) => rank[sale.status]!)
    expect(ranks).toEqual([...ranks].sort((x, y) => x - y))
    const ids = items.map((sale) => sale.id)
    if (ids.length < SALE_LIST_SIZE) expect(ids).toEqual(expect.arrayContaining([upcoming, live]))
  })

  it('when more sales run than the list holds, then the upcoming ones still have their place in it', async () => {
    // Sooner than any other test's upcoming sale, so it is first among the upcoming ones.
    const upcoming = await newSale(app, admin, { units: 1, startsInMs: 30_000 })
    await newSale(app, admin, { units: 1 })
    await newSale(app, admin, { units: 1 })
    // A list of two per kind: the running sales (at least the two above) fill their two places, and
    // the upcoming sale is still listed after them.
    const listed = await listCurrentSales(app.db.primary, 2)
    const now = Date.now()
    const running = listed.filter((sale) => sale.startsAt.getTime() <= now && sale.endsAt.getTime() > now)
    expect(running).toHaveLength(2)
    expect(listed.map((sale) => sale.id)).toContain(upcoming)
    expect(listed.length).toBeLessThanOrEqual(6)
  })
})

/** Reads server-sent events from a fetch response: each call resolves with the next event's data. */
function eventReader(response: Response) {
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let received = ''
  const next = async (): Promise<{ saleId: number; remaining: number; taken: number; status: string }> => {
    for (;;) {
      const end = received.indexOf('\n\n')
      if (end >= 0) {
        const event = received.slice(0, end)
        received = received.slice(end + 2)
        const data = event.split('\n').find((line) => line.startsWith('data: '))
        if (data) return JSON.parse(data.slice(6))
        continue
      }
      const chunk = await reader.read()
      if (chunk.done) throw new Error('the stream ended')
      received += decoder.decode(chunk.value, { stream: true })
    }
  }
  return Object.assign(next, { cancel: () => reader.cancel() })
}

/** The address of an app that is already listening. */
function addressOf(app: FastifyInstance): string {
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('the app does not listen on a port')
  return `http://127.0.0.1:${address.port}`
}
