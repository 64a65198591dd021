import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { createSigner } from 'fast-jwt'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  buildTestApp,
  newAdmin,
  newCustomer,
  newProduct,
  newSale,
  type TestUser,
} from '../../test/support/app.js'

// Tokens with a valid signature that must still be refused: claims of the wrong shape, and users that
// no longer exist. Each answer is 401, so the storefront starts over as a new guest.

describe('tokens with a valid signature', () => {
  let app: FastifyInstance
  let admin: TestUser
  let sign: (claims: Record<string, unknown>) => string

  beforeAll(async () => {
    app = await buildTestApp({ STOCK_STRATEGY: 'atomic' })
    admin = await newAdmin(app)
    sign = createSigner({ key: app.config.JWT_SECRET, expiresIn: 3600_000 })
  })
  afterAll(async () => {
    await app.close()
  })

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

  /** Every kind of request a customer makes, with these headers. */
  async function customerRequests(headers: Record<string, string>, saleId: number, productId: number) {
    return {
      readCart: await app.inject({ url: '/api/cart', headers }),
      writeCart: await app.inject({
        method: 'PUT',
        url: `/api/cart/items/${productId}`,
        headers: { ...headers, 'if-match': '"0"' },
        payload: { quantity: 1 },
      }),
      checkout: await app.inject({ method: 'POST', url: '/api/checkout', headers }),
      purchase: await app.inject({
        method: 'POST',
        url: `/api/sales/${saleId}/purchase`,
        headers,
        payload: { quantity: 1 },
      }),
      orders: await app.inject({ url: '/api/orders', headers }),
    }
  }

  it('when the token is for a user that does not exist, then every customer route is 401 UNAUTHORIZED', async () => {
    const productId = await newProduct(app, admin, { stock: 5 })
    const saleId = await newSale(app, admin, { units: 5 })
    const token = sign({ sub: randomUUID(), role: 'customer', guest: true })

    const answers = await customerRequests(bearer(token), saleId, productId)

    for (const [name, response] of Object.entries(answers)) {
      expect(response.statusCode, `${name}: ${response.body}`).toBe(401)
      expect(response.json(), name).toMatchObject({ code: 'UNAUTHORIZED' })
    }
  })

  it('when a user is deleted, then its token is refused once the worker forgets it (KNOWN_USER_TTL_SECONDS)', async () => {
    const short = await buildTestApp({ KNOWN_USER_TTL_SECONDS: '1' })
    try {
      const customer = await newCustomer(short)
      expect((await short.inject({ url: '/api/cart', headers: customer.headers })).statusCode).toBe(200)
      await short.db.primary.query('DELETE FROM users WHERE id = $1', [customer.id])

      // Remembered: no query per request, so the token works for at most the TTL after the deletion...
      expect((await short.inject({ url: '/api/cart', headers: customer.headers })).statusCode).toBe(200)
      await sleep(1100)
      // ...and is refused after it.
      const after = await short.inject({ url: '/api/cart', headers: customer.headers })
      expect(after.statusCode).toBe(401)
      expect(after.json()).toMatchObject({ code: 'UNAUTHORIZED' })
    } finally {
      await short.close()
    }
  })

  it('when the claims have another shape (sub not a UUID, unknown role, no guest flag), then it is 401', async () => {
    const customer = await newCustomer(app)
    const productId = await newProduct(app, admin, { stock: 5 })
    const saleId = await newSale(app, admin, { units: 5 })
    const forged = [
      { sub: 'not-a-uuid', role: 'customer', guest: true },
      { sub: "1' OR '1'='1", role: 'admin', guest: false },
      { sub: 42, role: 'customer', guest: true },
      { sub: customer.id, role: 'root', guest: false },
      { sub: customer.id, role: 'customer' },
      { sub: customer.id, role: 'customer', guest: 'no' },
      { role: 'customer', guest: true },
    ]
    for (const claims of forged) {
      const answers = await customerRequests(bearer(sign(claims)), saleId, productId)
      for (const [name, response] of Object.entries(answers)) {
        expect(response.statusCode, `${JSON.stringify(claims)} ${name}: ${response.body}`).toBe(401)
      }
    }
    const adminRoute = await app.inject({
      url: `/api/admin/sales/${saleId}/audit`,
      headers: bearer(sign({ sub: 'admin', role: 'admin', guest: false })),
    })
    expect(adminRoute.statusCode).toBe(401)
  })
})

const freshAddress = () => `10.${[1, 2, 3].map(() => Math.floor(Math.random() * 250)).join('.')}`

describe('new accounts per client address', () => {
  let app: FastifyInstance

  beforeAll(async () => {
    app = await buildTestApp({ RATE_LIMIT_SIGNUP_PER_MINUTE: '5' })
  })
  afterAll(async () => {
    await app.close()
  })

  // Through nginx: nginx (on loopback) writes the address it saw as the only X-Forwarded-For entry, and
  // the app trusts that one hop; so each test uses addresses of its own.
  const from = (address: string) => ({ remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': address } })

  it('when a client writes addresses of its own into X-Forwarded-For, then the limit still counts the address nginx saw (the last hop, even when that is loopback), and a client that is not nginx is counted by its own address', async () => {
    // A client on nginx's own machine: nginx saw 127.0.0.1, which is also the address the app trusts.
    const seenByNginx = '127.0.0.1'
    const statuses = []
    for (let i = 0; i < 11; i++) {
      const claimed = `${freshAddress()}, ${freshAddress()}`
      const response = await app.inject({
        method: 'POST',
        url: '/api/auth/guest',
        remoteAddress: '127.0.0.1',
        headers: { 'x-forwarded-for': `${claimed}, ${seenByNginx}` },
      })
      statuses.push(response.statusCode)
    }
    const direct = freshAddress()
    for (let i = 0; i < 11; i++) {
      const response = await app.inject({
        method: 'POST',
        url: '/api/auth/guest',
        remoteAddress: direct,
        headers: { 'x-forwarded-for': freshAddress() },
      })
      statuses.push(response.statusCode)
    }

    // 5 a minute per address: at most 10 across a window's edge, never 11.
    expect(statuses.slice(0, 11).filter((s) => s === 429).length).toBeGreaterThanOrEqual(1)
    expect(statuses.slice(11).filter((s) => s === 429).length).toBeGreaterThanOrEqual(1)
  })

  it(
    'when one address makes more accounts a minute than RATE_LIMIT_SIGNUP_PER_MINUTE, then the rest are 429 with Retry-After, and no user is created',
    { timeout: 90_000 },
    async () => {
      // The counter is per minute: start well inside a window, so all seven land in the same one.
      if (Date.now() % 60_000 > 55_000) await sleep(60_000 - (Date.now() % 60_000) + 100)
      const address = freshAddress()
      const before = await app.db.primary.query<{ n: number }>('SELECT count(*)::int AS n FROM users')
      const answers = []
      for (let i = 0; i < 4; i++)
        answers.push(await app.inject({ method: 'POST', url: '/api/auth/guest', ...from(address) }))
      answers.push(
        await app.inject({
          method: 'POST',
          url: '/api/auth/register',
          ...from(address),
          payload: { email: `user-${randomUUID()}@test.stampede.local`, password: 'correct horse battery' },
        }),
      )
      const refused = [
        await app.inject({ method: 'POST', url: '/api/auth/guest', ...from(address) }),
        await app.inject({
          method: 'POST',
          url: '/api/auth/register',
          ...from(address),
          payload: { email: `user-${randomUUID()}@test.stampede.local`, password: 'correct horse battery' },
        }),
      ]

      expect(answers.map((a) => a.statusCode)).toEqual([201, 201, 201, 201, 201])
      for (const response of refused) {
        expect(response.statusCode).toBe(429)
        expect(response.json()).toMatchObject({ code: 'RATE_LIMITED' })
        expect(Number(response.headers['retry-after'])).toBeGreaterThanOrEqual(1)
      }
      const after = await app.db.primary.query<{ n: number }>('SELECT count(*)::int AS n FROM users')
      // Other test files may not run meanwhile (one file at a time): exactly our five were created.
      expect(after.rows[0]!.n - before.rows[0]!.n).toBe(5)
      // Another address is not affected.
      expect(
        (await app.inject({ method: 'POST', url: '/api/auth/guest', ...from(freshAddress()) })).statusCode,
      ).toBe(201)
    },
  )
})
