import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { waitFor } from '../../scripts/stack/process.js'
import {
  buildTestApp,
  fillCart,
  newAdmin,
  newCustomer,
  newProduct,
  type TestUser,
} from '../../test/support/app.js'
import { EDGE_HEADER } from './auth.plugin.js'

// Sessions that can end: the user's row, not the token, says what a request may do. A logout or a new
// password ends every token signed before it, on every worker; a role taken away is gone at once.

const PASSWORD = 'correct horse battery'
const freshEmail = () => `user-${randomUUID()}@test.stampede.local`
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

describe('sessions', () => {
  // Two instances stand for two workers: same Postgres and Redis, a cache of users each.
  let app: FastifyInstance
  let other: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp()
    other = await buildTestApp()
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await Promise.all([app.close(), other.close()])
  })

  async function register(email = freshEmail()) {
    const response = await app.inject({
      method: 'POST',
      url: '/api/auth/register',
      payload: { email, password: PASSWORD },
    })
    expect(response.statusCode, response.body).toBe(201)
    return { email, ...response.json<{ token: string; user: { id: string } }>() }
  }
  const login = (email: string, password = PASSWORD) =>
    app.inject({ method: 'POST', url: '/api/auth/login', payload: { email, password } })
  const cartStatus = async (instance: FastifyInstance, token: string) =>
    (await instance.inject({ url: '/api/cart', headers: bearer(token) })).statusCode

  it('when a user logs out, then every token signed before (this device and others) is 401 on every worker, and a new login works', async () => {
    const { email, token } = await register()
    const second = (await login(email)).json<{ token: string }>().token
    // Both workers have seen both tokens, and remember the user.
    for (const instance of [app, other])
      for (const t of [token, second]) expect(await cartStatus(instance, t)).toBe(200)

    const logout = await app.inject({ method: 'POST', url: '/api/auth/logout', headers: bearer(token) })

    expect(logout.statusCode).toBe(204)
    expect(logout.headers['cache-control']).toBe('no-store')
    expect(await cartStatus(app, token)).toBe(401)
    expect(await cartStatus(app, second)).toBe(401)
    // The other worker hears of it through Redis: long before its cache would forget the user.
    await waitFor(
      'the other worker to refuse the ended session',
      async () => (await cartStatus(other, second)) === 401,
    )
    const refused = await other.inject({ url: '/api/cart', headers: bearer(token) })
    expect(refused.json()).toMatchObject({ code: 'UNAUTHORIZED', message: expect.stringContaining('ended') })
    const fresh = (await login(email)).json<{ token: string }>().token
    expect(await cartStatus(app, fresh)).toBe(200)
    expect(await cartStatus(other, fresh)).toBe(200)
  })

  it('when a user changes the password, then older tokens end, the answer is a working session, and only the new password logs in', async () => {
    const { email, token } = await register()
    const elsewhere = (await login(email)).json<{ token: string }>().token
    expect(await cartStatus(other, elsewhere)).toBe(200)
    const change = (body: object, t = token) =>
      app.inject({ method: 'POST', url: '/api/auth/password', headers: bearer(t), payload: body })

    const wrong = await change({ currentPassword: 'not the password', newPassword: 'a new passphrase' })
    const weak = await change({ currentPassword: PASSWORD, newPassword: 'password' })
    const changed = await change({ currentPassword: PASSWORD, newPassword: 'a new passphrase' })

    expect(wrong.statusCode).toBe(401)
    expect(wrong.json()).toMatchObject({ code: 'INVALID_CREDENTIALS' })
    expect(weak.statusCode).toBe(422)
    expect(weak.json()).toMatchObject({ code: 'WEAK_PASSWORD' })
    expect(changed.statusCode, changed.body).toBe(200)
    expect(changed.headers['cache-control']).toBe('no-store')
    const renewed = changed.json<{ token: string }>().token
    expect(await cartStatus(app, token)).toBe(401)
    expect(await cartStatus(app, renewed)).toBe(200)
    await waitFor(
      'the other worker to refuse the old session',
      async () => (await cartStatus(other, elsewhere)) === 401,
    )
    expect(await cartStatus(other, renewed)).toBe(200)
    expect((await login(email)).statusCode).toBe(401)
    expect((await login(email, 'a new passphrase')).statusCode).toBe(200)
  })

  it('when a guest asks to change a password, then it is 409 NO_PASSWORD', async () => {
    const guest = await newCustomer(app)
    const response = await app.inject({
      method: 'POST',
      url: '/api/auth/password',
      headers: guest.headers,
      payload: { currentPassword: 'anything', newPassword: 'a new passphrase' },
    })
    expect(response.statusCode).toBe(409)
    expect(response.json()).toMatchObject({ code: 'NO_PASSWORD' })
  })

  it("when an admin's role is taken away in the user's row, then the same token is a customer's on every worker", async () => {
    const demoted = await newAdmin(app)
    const adminRoute = (instance: FastifyInstance) =>
      instance.inject({ url: '/api/admin/sales/1/audit', headers: demoted.headers })
    expect((await adminRoute(app)).statusCode).not.toBe(403)
    expect((await adminRoute(other)).statusCode).not.toBe(403)

    await app.db.primary.query(`UPDATE users SET role = 'customer' WHERE id = $1`, [demoted.id])
    await app.userChanged(demoted.id)

    expect((await adminRoute(app)).statusCode).toBe(403)
    await waitFor(
      'the other worker to refuse the demoted admin',
      async () => (await adminRoute(other)).statusCode === 403,
    )
    // The token still names the user: its customer routes work.
    expect(await cartStatus(other, demoted.token)).toBe(200)
  })

  it("when an admin's token comes through the public server, then it has a customer's rights: another user's order is 404 and admin routes 403", async () => {
    const productId = await newProduct(app, admin, { stock: 5 })
    const customer = await newCustomer(app)
    await fillCart(app, customer, [{ productId, quantity: 1 }])
    const order = await app.inject({ method: 'POST', url: '/api/checkout', headers: customer.headers })
    expect(order.statusCode, order.body).toBe(201)
    const url = `/api/orders/${order.json<{ id: string }>().id}`
    const through = (edge: string) => ({ ...admin.headers, [EDGE_HEADER]: edge })

    const viaAdminServer = await app.inject({ url, headers: through('admin') })
    const viaPublicServer = await app.inject({ url, headers: through('public') })
    const cancelViaPublic = await app.inject({
      method: 'POST',
      url: `${url}/cancel`,
      headers: through('public'),
    })
    const adminRouteViaPublic = await app.inject({
      url: `/api/admin/sales/1/audit`,
      headers: through('public'),
    })

    expect(viaAdminServer.statusCode).toBe(200)
    expect(viaPublicServer.statusCode).toBe(404)
    expect(cancelViaPublic.statusCode).toBe(404)
    expect(adminRouteViaPublic.statusCode).toBe(403)
  })

  it("when an answer carries a token or the user's own data, then it says Cache-Control: no-store", async () => {
    const email = freshEmail()
    const registered = await app.inject({
      method: 'POST',
      url: '/api/auth/register',
      payload: { email, password: PASSWORD },
    })
    const headers = bearer(registered.json<{ token: string }>().token)
    const answers = {
      register: registered,
      login: await login(email),
      guest: await app.inject({ method: 'POST', url: '/api/auth/guest' }),
      cart: await app.inject({ url: '/api/cart', headers }),
      orders: await app.inject({ url: '/api/orders', headers }),
      salesMine: await app.inject({ url: '/api/sales/mine?ids=1', headers }),
      unauthorized: await app.inject({ url: '/api/orders' }),
    }
    for (const [name, response] of Object.entries(answers)) {
      expect(response.statusCode, `${name}: ${response.body}`).toBeLessThan(500)
      expect(response.headers['cache-control'], name).toBe('no-store')
    }
  })
})
