import { randomUUID } from 'node:crypto'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
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

interface ProductBody {
  id: number
  sku: string
  name: string
  priceCents: number
  available: number
}

interface Page {
  items: ProductBody[]
  nextCursor: string | null
}

describe('catalog', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp()
    admin = await newAdmin(app)
  })

  afterAll(async () => {
    await app.close()
  })

  // Reads go to the replica, which may lag the primary by a moment: poll until it shows what we wrote.
  async function readFromReplicaUntil(
    id: number,
    shows: (product: ProductBody) => boolean,
  ): Promise<ProductBody | undefined> {
    let last: ProductBody | undefined
    for (let attempt = 0; attempt < 40; attempt++) {
      const response = await app.inject({ url: `/api/products/${id}` })
      if (response.statusCode === 200) {
        last = response.json<ProductBody>()
        if (shows(last)) return last
      }
      await sleep(50)
    }
    return last
  }

  const adminRequest = (method: 'PATCH' | 'PUT' | 'POST', url: string, payload: object) =>
    app.inject({ method, url, headers: admin.headers, payload })

  it('when every page is walked with limit=2, then each product appears exactly once, in id order', async () => {
    const mine = [
      await newProduct(app, admin, { stock: 1 }),
      await newProduct(app, admin, { stock: 1 }),
      await newProduct(app, admin, { stock: 1 }),
    ]
    await readFromReplicaUntil(mine.at(-1)!, () => true)

    const seen: number[] = []
    let cursor: string | null = null
    let last: Page | undefined
    for (let pages = 0; pages < 10_000; pages++) {
      const url: string = cursor === null ? '/api/products?limit=2' : `/api/products?limit=2&cursor=${cursor}`
      const response: LightMyRequestResponse = await app.inject({ url })
      expect(response.statusCode).toBe(200)
      last = response.json<Page>()
      expect(last.items.length).toBeLessThanOrEqual(2)
      seen.push(...last.items.map((p) => p.id))
      cursor = last.nextCursor
      if (cursor === null) break
    }

    expect(last?.nextCursor).toBeNull()
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]!)
    for (const id of mine) expect(seen.filter((s) => s === id)).toHaveLength(1)
  })

  it('when limit is above 100 or 0, then the page is refused with 400', async () => {
    for (const limit of ['101', '0', '-1', 'ten']) {
      const response = await app.inject({ url: `/api/products?limit=${limit}` })
      expect(response.statusCode, limit).toBe(400)
      expect(response.json()).toMatchObject({ code: 'VALIDATION_FAILED' })
    }
  })

  it('when the cursor is not one the API handed out, then it is 400 INVALID_CURSOR', async () => {
    const forged = Buffer.from('q:12').toString('base64url')
    for (const cursor of ['garbage', forged]) {
      const response = await app.inject({ url: `/api/products?cursor=${cursor}` })
      expect(response.statusCode, cursor).toBe(400)
      expect(response.json()).toMatchObject({ code: 'INVALID_CURSOR' })
    }
  })

  it('when a product id does not exist, then it is 404 NOT_FOUND; when it is not a number, 400', async () => {
    const unknown = await app.inject({ url: '/api/products/2147483647' })
    expect(unknown.statusCode).toBe(404)
    expect(unknown.json()).toMatchObject({ code: 'NOT_FOUND' })

    const notANumber = await app.inject({ url: '/api/products/abc' })
    expect(notANumber.statusCode).toBe(400)
    expect(notANumber.json()).toMatchObject({ code: 'VALIDATION_FAILED' })
  })

  it('when an admin creates a product, then it is 201 and the same SKU again is 409 SKU_TAKEN', async () => {
    const body = { sku: `test-${randomUUID()}`, name: 'Lamp', priceCents: 2599, stock: 7 }

    const created = await adminRequest('POST', '/api/admin/products', body)

    expect(created.statusCode).toBe(201)
    const product = created.json<ProductBody>()
    expect(product).toMatchObject({ sku: body.sku, name: 'Lamp', priceCents: 2599, available: 7 })
    expect(await readFromReplicaUntil(product.id, () => true)).toMatchObject({ sku: body.sku })

    const duplicate = await adminRequest('POST', '/api/admin/products', { ...body, name: 'Other lamp' })
    expect(duplicate.statusCode).toBe(409)
    expect(duplicate.json()).toMatchObject({ code: 'SKU_TAKEN' })
  })

  it('when an admin renames a product, then the answer and (soon) the public read show the new name', async () => {
    const id = await newProduct(app, admin, { stock: 1, name: 'Before' })

    const response = await adminRequest('PATCH', `/api/admin/products/${id}`, { name: 'After' })

    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({ id, name: 'After' })
    expect(await readFromReplicaUntil(id, (p) => p.name === 'After')).toMatchObject({ name: 'After' })
  })

  it('when an admin changes a price, then a cart holding the product totals at the new server price', async () => {
    const id = await newProduct(app, admin, { stock: 5, priceCents: 1000 })
    const customer = await newCustomer(app)
    await fillCart(app, customer, [{ productId: id, quantity: 2 }])

    const response = await adminRequest('PUT', `/api/admin/products/${id}/price`, { priceCents: 1500 })

    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({ id, priceCents: 1500 })
    expect(await readFromReplicaUntil(id, (p) => p.priceCents === 1500)).toMatchObject({ priceCents: 1500 })
    const cart = await app.inject({ url: '/api/cart', headers: customer.headers })
    expect(cart.json()).toMatchObject({
      totalCents: 3000,
      items: [{ productId: id, quantity: 2, unitPriceCents: 1500, lineTotalCents: 3000 }],
    })
  })

  it('when an admin restocks, then available and on_hand rise together by the same amount', async () => {
    const id = await newProduct(app, admin, { stock: 3 })
    const before = await stockOf(app, id)

    const response = await adminRequest('POST', `/api/admin/products/${id}/restock`, { quantity: 4 })

    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({ id, available: 7 })
    const after = await stockOf(app, id)
    expect(after).toEqual({
      onHand: before.onHand + 4,
      available: before.available + 4,
      reserved: before.reserved,
      sold: before.sold,
    })
    expect(await readFromReplicaUntil(id, (p) => p.available === 7)).toMatchObject({ available: 7 })
  })

  it('when an admin writes to an unknown product, then it is 404 NOT_FOUND', async () => {
    const rename = await adminRequest('PATCH', '/api/admin/products/2147483647', { name: 'Ghost' })
    const restock = await adminRequest('POST', '/api/admin/products/2147483647/restock', { quantity: 1 })

    for (const response of [rename, restock]) {
      expect(response.statusCode).toBe(404)
      expect(response.json()).toMatchObject({ code: 'NOT_FOUND' })
    }
  })
})
