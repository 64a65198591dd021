import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, newAdmin, newProduct, type TestUser } from '../../test/support/app.js'

// What the catalogue refuses at the door: text Postgres cannot store, links a browser would run, and
// ids that are not written the one plain way.

describe('product input', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp()
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await app.close()
  })

  const create = (product: Record<string, unknown>) =>
    app.inject({
      method: 'POST',
      url: '/api/admin/products',
      headers: admin.headers,
      payload: {
        sku: `test-${Math.random().toString(36).slice(2)}`,
        name: 'Plain',
        priceCents: 100,
        stock: 1,
        ...product,
      },
    })
  const change = (id: number, changes: Record<string, unknown>) =>
    app.inject({
      method: 'PATCH',
      url: `/api/admin/products/${id}`,
      headers: admin.headers,
      payload: changes,
    })
  const productCount = async () =>
    (await app.db.primary.query<{ n: number }>('SELECT count(*)::int AS n FROM products')).rows[0]!.n

  it('when a name or description holds a NUL character, then it is 400 VALIDATION_FAILED and nothing is written', async () => {
    const id = await newProduct(app, admin, { stock: 1, name: 'Before' })
    const before = await productCount()

    const answers = [
      await create({ name: 'a\u0000b' }),
      await create({ description: '\u0000' }),
      await change(id, { name: 'x\u0000' }),
      await change(id, { description: 'tail\u0000' }),
    ]

    for (const response of answers) {
      expect(response.statusCode, response.body).toBe(400)
      expect(response.json()).toMatchObject({ code: 'VALIDATION_FAILED' })
    }
    expect(await productCount()).toBe(before)
    expect((await app.inject({ url: `/api/products/${id}` })).json()).toMatchObject({ name: 'Before' })
  })

  it('when imageUrl is not an http(s) URL or a path on this site, then it is 400; those two are accepted', async () => {
    const id = await newProduct(app, admin, { stock: 1 })
    const refused = [
      'javascript:alert(1)',
      'JAVASCRIPT:alert(1)',
      ' javascript:alert(1)',
      'data:image/svg+xml,<svg onload=alert(1)>',
      'vbscript:msgbox',
      '//evil.example/x.png',
      '/\\evil.example/x.png',
      'images/relative.png',
      'https://exa mple.com/x.png',
      'https://example.com/\u0000.png',
    ]
    for (const imageUrl of refused) {
      expect((await create({ imageUrl })).statusCode, imageUrl).toBe(400)
      expect((await change(id, { imageUrl })).statusCode, imageUrl).toBe(400)
    }
    for (const imageUrl of [
      'https://cdn.example.com/a.png?v=1',
      'http://example.com/b.svg',
      '/images/c.svg',
      null,
    ]) {
      const response = await change(id, { imageUrl })
      expect(response.statusCode, String(imageUrl)).toBe(200)
      expect(response.json()).toMatchObject({ imageUrl })
    }
  })

  it('when an id in a path or query is not plain decimal (1e1, 0x10, 010, +1), then it is 400, not another product', async () => {
    const id = await newProduct(app, admin, { stock: 1 })
    expect((await app.inject({ url: `/api/products/${id}` })).statusCode).toBe(200)

    for (const spelling of ['1e1', '0x10', '0b1', '010', '+1', '1.0', ' 1', '1 ', `${id}.0`, `${id}e0`]) {
      const response = await app.inject({ url: `/api/products/${encodeURIComponent(spelling)}` })
      expect(response.statusCode, spelling).toBe(400)
      expect(response.json()).toMatchObject({ code: 'VALIDATION_FAILED' })
    }
    expect((await app.inject({ url: '/api/products?limit=1e1' })).statusCode).toBe(400)
    expect((await app.inject({ url: '/api/sales/0x1' })).statusCode).toBe(400)
    expect((await app.inject({ url: '/api/products?limit=10' })).statusCode).toBe(200)
  })
})
