import type { FastifyInstance } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Metrics } from '../metrics.js'
import { buildTestApp, newAdmin, newProduct, type TestUser } from '../../test/support/app.js'

async function queriesSent(metrics: Metrics): Promise<number> {
  const { values } = await metrics.dbQueries.get()
  return values.reduce((sum, v) => sum + v.value, 0)
}

describe('catalog reads through the two-level cache', () => {
  let a: FastifyInstance
  let b: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    // Two instances share Redis and Postgres like two PM2 workers; each has its own L1 and counters.
    a = await buildTestApp()
    b = await buildTestApp()
    admin = await newAdmin(a)
  })

  afterAll(async () => {
    await Promise.all([a.close(), b.close()])
  })

  it('when 500 requests for a cold product arrive at once, then exactly one database query serves them all', async () => {
    const id = await newProduct(a, admin, { stock: 3, priceCents: 4200 })
    const before = await queriesSent(b.metrics)

    const responses = await Promise.all(
      Array.from({ length: 500 }, () => b.inject({ url: `/api/products/${id}` })),
    )

    expect(responses.every((r) => r.statusCode === 200 && r.json().priceCents === 4200)).toBe(true)
    expect((await queriesSent(b.metrics)) - before).toBe(1)
  })

  it('when an unknown product id is asked for again and again, then only the first request queries the database', async () => {
    const unknown = 2_000_000_000 + Math.floor(Math.random() * 100_000_000)
    const [beforeA, beforeB] = [await queriesSent(a.metrics), await queriesSent(b.metrics)]

    for (let i = 0; i < 20; i++) {
      const response = await a.inject({ url: `/api/products/${unknown}` })
      expect(response.statusCode).toBe(404)
    }
    const onB = await b.inject({ url: `/api/products/${unknown}` })

    expect(onB.statusCode).toBe(404)
    expect((await queriesSent(a.metrics)) - beforeA).toBe(1)
    expect((await queriesSent(b.metrics)) - beforeB).toBe(0)
  })

  it('when an admin changes a price on one instance, then the other instance shows the new price within 500 ms', async () => {
    const id = await newProduct(a, admin, { stock: 3, priceCents: 1000 })
    expect((await a.inject({ url: `/api/products/${id}` })).json()).toMatchObject({ priceCents: 1000 })
    expect((await b.inject({ url: `/api/products/${id}` })).json()).toMatchObject({ priceCents: 1000 })

    const changed = await a.inject({
      method: 'PUT',
      url: `/api/admin/products/${id}/price`,
      headers: admin.headers,
      payload: { priceCents: 1500 },
    })
    expect(changed.statusCode).toBe(200)
    const startedAt = Date.now()
    let price = (await b.inject({ url: `/api/products/${id}` })).json<{ priceCents: number }>().priceCents
    while (price !== 1500 && Date.now() - startedAt < 500) {
      await sleep(10)
      price = (await b.inject({ url: `/api/products/${id}` })).json<{ priceCents: number }>().priceCents
    }

    expect(price).toBe(1500)
    expect(Date.now() - startedAt).toBeLessThan(500)
  })

  it('when an admin restocks, then the product page shows the new available count on every instance', async () => {
    const id = await newProduct(a, admin, { stock: 2 })
    await a.inject({ url: `/api/products/${id}` })
    await b.inject({ url: `/api/products/${id}` })

    await b.inject({
      method: 'POST',
      url: `/api/admin/products/${id}/restock`,
      headers: admin.headers,
      payload: { quantity: 5 },
    })
    await sleep(50)

    expect((await a.inject({ url: `/api/products/${id}` })).json()).toMatchObject({ available: 7 })
    expect((await b.inject({ url: `/api/products/${id}` })).json()).toMatchObject({ available: 7 })
  })
})
