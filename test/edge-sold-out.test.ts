import type { FastifyInstance } from 'fastify'
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, newAdmin, newCustomer, newSale, type TestUser } from './support/app.js'
import { waitFor } from '../scripts/stack/process.js'
import { testStack } from './support/stack-env.js'

// Sold out at the edge (src/purchase/edge/): once a sale has no unit left and none in flight, nginx
// answers its purchase attempts itself; a buyer with an order who retries with a key still reaches the
// app; a released unit reopens the sale. Through the test stack's nginx, its workers and its jobs process.

const stack = testStack()
const hasNginx = stack.nginxUrl !== undefined && stack.nginxAdminUrl !== undefined

interface EdgeStatus {
  fresh: boolean
  soldOut: number[]
  queued: number[]
  answered: Record<string, number>
  notAdmitted: Record<string, number>
}

const edgeStatus = async (): Promise<EdgeStatus> =>
  (await fetch(`${stack.nginxAdminUrl}/edge`)).json() as Promise<EdgeStatus>
const answeredAtEdge = async (saleId: number) => (await edgeStatus()).answered[String(saleId)] ?? 0

/** Waits until the edge's view of the sale is `soldOut` (or 10 s pass). */
const edgeSees = (saleId: number, soldOut: boolean) =>
  waitFor(
    `the edge to see sale ${saleId} ${soldOut ? 'sold out' : 'open'}`,
    async () => {
      const status = await edgeStatus()
      return status.fresh && status.soldOut.includes(saleId) === soldOut
    },
    10_000,
  )

const buy = (buyer: TestUser | null, saleId: number, key?: string) =>
  fetch(`${stack.nginxUrl}/api/sales/${saleId}/purchase`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(buyer ? buyer.headers : {}),
      ...(key ? { 'idempotency-key': key } : {}),
    },
    body: JSON.stringify({ quantity: 1 }),
  })

describe.runIf(hasNginx)('sold out at the edge', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp()
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await app?.close()
  })

  it("when a sale sells out, nginx answers the next attempts with the API's 409 SOLD_OUT, a retry with an order's key still gets its order, and a cancelled order reopens the sale", async () => {
    const saleId = await newSale(app, admin, { units: 2 })
    const [first, second, late] = [await newCustomer(app), await newCustomer(app), await newCustomer(app)]
    const firstKey = randomUUID()
    const bought = await buy(first, saleId, firstKey)
    expect(bought.status).toBe(201)
    const order = (await bought.json()) as { id: string }
    expect((await buy(second, saleId, randomUUID())).status).toBe(201)

    await edgeSees(saleId, true)

    // The app's own answer (the same code the workers run), the reference the edge's must match; nginx
    // adds its security headers to both.
    const fromApp = await app.inject({
      method: 'POST',
      url: `/api/sales/${saleId}/purchase`,
      headers: late.headers,
      payload: { quantity: 1 },
    })
    expect(fromApp.statusCode).toBe(409)
    const before = await answeredAtEdge(saleId)
    const fromEdge = await buy(late, saleId)
    expect(fromEdge.status).toBe(409)
    expect(await fromEdge.json()).toEqual(fromApp.json())
    expect(fromEdge.headers.get('content-type')).toBe(fromApp.headers['content-type'])
    expect(fromEdge.headers.get('x-request-id')).toMatch(/^[0-9a-f]{32}$/)
    expect(fromEdge.headers.get('content-security-policy')).toContain("frame-ancestors 'none'")
    // A keyed attempt of a buyer without an order is answered there too, and so is a new key of a buyer
    // with one: only the key of an order, sent again, is a retry.
    expect((await buy(late, saleId, randomUUID())).status).toBe(409)
    expect((await buy(first, saleId, randomUUID())).status).toBe(409)
    expect(await answeredAtEdge(saleId)).toBe(before + 3)

    // The holder's retry with its key reaches a worker and is replayed; no token is the app's 401.
    const replay = await buy(first, saleId, firstKey)
    expect(replay.status).toBe(201)
    expect(replay.headers.get('idempotent-replayed')).toBe('true')
    expect(((await replay.json()) as { id: string }).id).toBe(order.id)
    expect((await buy(null, saleId)).status).toBe(401)
    expect(await answeredAtEdge(saleId)).toBe(before + 3)

    // A cancelled order gives its unit back: the edge reopens the sale, and the late buyer gets it.
    const cancelled = await fetch(`${stack.nginxUrl}/api/orders/${order.id}/cancel`, {
      method: 'POST',
      headers: first.headers,
    })
    expect(cancelled.status).toBe(200)
    await edgeSees(saleId, false)
    expect((await buy(late, saleId, randomUUID())).status).toBe(201)
  })

  it('when a sale has a waiting room, nginx answers an attempt without an admission 403 NOT_ADMITTED, as the app would', async () => {
    const saleId = await newSale(app, admin, { units: 3, queue: 'fifo' })
    const buyer = await newCustomer(app)
    await waitFor(
      'the edge to know the waiting room',
      async () => (await edgeStatus()).queued.includes(saleId),
      10_000,
    ).catch(() => undefined)
    const fromApp = await app.inject({
      method: 'POST',
      url: `/api/sales/${saleId}/purchase`,
      headers: buyer.headers,
      payload: { quantity: 1 },
    })
    const fromEdge = await buy(buyer, saleId)
    expect(fromEdge.status).toBe(403)
    expect(await fromEdge.json()).toEqual(fromApp.json())
    expect((await edgeStatus()).notAdmitted[String(saleId)]).toBe(1)
    // An admission of the right shape goes on to the app, which checks its signature.
    const forged = await fetch(`${stack.nginxUrl}/api/sales/${saleId}/purchase`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...buyer.headers,
        'waiting-room-admission': `${Date.now() + 60_000}.${'A'.repeat(43)}`,
      },
      body: JSON.stringify({ quantity: 1 }),
    })
    expect(forged.status).toBe(403)
    expect((await edgeStatus()).notAdmitted[String(saleId)]).toBe(1)
  })

  it('when a sale still has units, the edge never answers for it', async () => {
    const saleId = await newSale(app, admin, { units: 5 })
    const buyer = await newCustomer(app)
    expect((await buy(buyer, saleId, randomUUID())).status).toBe(201)
    await sleep(600)
    const status = await edgeStatus()
    expect(status.fresh).toBe(true)
    expect(status.soldOut).not.toContain(saleId)
    expect(await answeredAtEdge(saleId)).toBe(0)
  })
})
