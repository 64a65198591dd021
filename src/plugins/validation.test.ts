import { randomUUID } from 'node:crypto'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  buildTestApp,
  fillCart,
  newAdmin,
  newCustomer,
  newProduct,
  type TestUser,
} from '../../test/support/app.js'

// Bodies are validated strictly (no coercion, unknown properties refused); every refusal is a 4xx
// with { code, message } and leaves the database as it was.
describe('strict body validation', () => {
  let app: FastifyInstance
  let admin: TestUser
  let customer: TestUser
  let productId: number

  beforeAll(async () => {
    app = await buildTestApp()
    admin = await newAdmin(app)
    customer = await newCustomer(app)
    productId = await newProduct(app, admin, { stock: 10 })
    await fillCart(app, customer, [{ productId, quantity: 1 }])
  })

  afterAll(async () => {
    await app.close()
  })

  const readCart = async () => {
    const response = await app.inject({ url: '/api/cart', headers: customer.headers })
    return { etag: response.headers.etag as string, body: response.json<unknown>() }
  }

  /** Sends a raw cart write with the current ETag, so only the body can be at fault. */
  async function putRaw(payload: string, contentType = 'application/json'): Promise<LightMyRequestResponse> {
    const { etag } = await readCart()
    return app.inject({
      method: 'PUT',
      url: `/api/cart/items/${productId}`,
      headers: { ...customer.headers, 'if-match': etag, 'content-type': contentType },
      payload,
    })
  }

  async function expectRefusedAndNothingWritten(
    payload: string,
    status: number,
    code: string,
    contentType?: string,
  ): Promise<void> {
    const before = await readCart()
    const response = await putRaw(payload, contentType)
    expect(response.statusCode, payload.slice(0, 60)).toBe(status)
    expect(response.json()).toEqual({ code, message: expect.any(String) })
    expect(await readCart()).toEqual(before)
  }

  it('when a body has an unknown property, then it is 400 and nothing is written', async () => {
    await expectRefusedAndNothingWritten(
      JSON.stringify({ quantity: 2, priceCents: 1 }),
      400,
      'VALIDATION_FAILED',
    )
  })

  it('when a quantity is "2", true, 1.5, null, 0 or 101, then it is 400 (no coercion) and nothing is written', async () => {
    for (const quantity of ['"2"', 'true', '1.5', 'null', '0', '101', '[2]']) {
      await expectRefusedAndNothingWritten(`{"quantity":${quantity}}`, 400, 'VALIDATION_FAILED')
    }
  })

  it('when a body is missing, empty or not an object, then it is 400 and nothing is written', async () => {
    await expectRefusedAndNothingWritten('{}', 400, 'VALIDATION_FAILED')
    await expectRefusedAndNothingWritten('[]', 400, 'VALIDATION_FAILED')
    await expectRefusedAndNothingWritten('2', 400, 'VALIDATION_FAILED')
    const empty = await putRaw('')
    expect(empty.statusCode).toBe(400)
    expect(empty.json()).toEqual({ code: expect.any(String), message: expect.any(String) })
  })

  it('when a body is malformed JSON, then it is 400 with { code, message } and nothing is written', async () => {
    await expectRefusedAndNothingWritten('{"quantity": 2', 400, 'BAD_REQUEST')
    await expectRefusedAndNothingWritten("{'quantity': 2}", 400, 'BAD_REQUEST')
  })

  it('when a body is larger than BODY_LIMIT_BYTES, then it is 413 BODY_TOO_LARGE and nothing is written', async () => {
    const padding = 'x'.repeat(app.config.BODY_LIMIT_BYTES + 1)
    await expectRefusedAndNothingWritten(JSON.stringify({ quantity: 2, padding }), 413, 'BODY_TOO_LARGE')
  })

  it('when a body is not JSON, then it is refused (415 for a form, 400 for text) and nothing is written', async () => {
    const form = 'application/x-www-form-urlencoded'
    await expectRefusedAndNothingWritten('quantity=2', 415, 'UNSUPPORTED_MEDIA_TYPE', form)
    // Fastify parses text/plain into a string, which the schema then refuses: it is not an object.
    await expectRefusedAndNothingWritten('{"quantity":2}', 400, 'VALIDATION_FAILED', 'text/plain')
  })

  it('when a valid body follows all the refusals, then it is written (the ETag was never moved)', async () => {
    const { etag } = await readCart()

    const response = await putRaw(JSON.stringify({ quantity: 2 }))

    expect(response.statusCode).toBe(200)
    expect(response.headers.etag).not.toBe(etag)
    expect(response.json()).toMatchObject({ items: [{ productId, quantity: 2 }] })
  })

  it('when an admin sends priceCents as "100", a negative price or an unknown field, then it is 400 and no product is made', async () => {
    const base = { name: 'Strict', priceCents: 100, stock: 1 }
    const bodies = [
      { ...base, priceCents: '100' },
      { ...base, priceCents: -1 },
      { ...base, stock: '1' },
      { ...base, available: 5 },
    ]

    for (const body of bodies) {
      const sku = `test-${randomUUID()}`
      const response = await app.inject({
        method: 'POST',
        url: '/api/admin/products',
        headers: admin.headers,
        payload: { ...body, sku },
      })
      expect(response.statusCode, JSON.stringify(body)).toBe(400)
      expect(response.json()).toMatchObject({ code: 'VALIDATION_FAILED' })
      const { rows } = await app.db.primary.query('SELECT 1 FROM products WHERE sku = $1', [sku])
      expect(rows).toHaveLength(0)
    }
  })

  it('when a query string has an unknown parameter, then it is 400, while path and query numbers are still parsed from text', async () => {
    const unknown = await app.inject({ url: '/api/products?limit=2&colour=red' })
    expect(unknown.statusCode).toBe(400)

    const parsed = await app.inject({ url: `/api/products?limit=2` })
    expect(parsed.statusCode).toBe(200)
    expect(parsed.json<{ items: unknown[] }>().items.length).toBeLessThanOrEqual(2)
  })
})
