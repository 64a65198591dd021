import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, newCustomer } from '../../test/support/app.js'

const freshEmail = () => `user-${randomUUID()}@test.stampede.local`
const PASSWORD = 'correct horse battery'

describe('auth', () => {
  let app: FastifyInstance

  beforeAll(async () => {
    app = await buildTestApp()
  })

  afterAll(async () => {
    await app.close()
  })

  const register = (email: string, password = PASSWORD) =>
    app.inject({ method: 'POST', url: '/api/auth/register', payload: { email, password } })
  const login = (email: string, password = PASSWORD) =>
    app.inject({ method: 'POST', url: '/api/auth/login', payload: { email, password } })

  it('when a new email registers, then it gets 201 and a token that opens its cart', async () => {
    const email = freshEmail()
    const response = await register(email)

    expect(response.statusCode).toBe(201)
    const session = response.json<{ token: string; user: { id: string; email: string; role: string } }>()
    expect(session.user).toMatchObject({ email, role: 'customer', isGuest: false })
    const cart = await app.inject({ url: '/api/cart', headers: { authorization: `Bearer ${session.token}` } })
    expect(cart.statusCode).toBe(200)
  })

  it('when an email registers twice (in another case), then the second answer is 409 EMAIL_TAKEN', async () => {
    const email = freshEmail()
    expect((await register(email)).statusCode).toBe(201)

    const again = await register(email.toUpperCase())

    expect(again.statusCode).toBe(409)
    expect(again.json()).toMatchObject({ code: 'EMAIL_TAKEN' })
  })

  it('when a registered user logs in with the right password, then it gets 200 and a token', async () => {
    const email = freshEmail()
    const registered = (await register(email)).json<{ user: { id: string } }>()

    const response = await login(email.toUpperCase())

    expect(response.statusCode).toBe(200)
    const session = response.json<{ token: string; user: { id: string } }>()
    expect(session.user.id).toBe(registered.user.id)
    const cart = await app.inject({ url: '/api/cart', headers: { authorization: `Bearer ${session.token}` } })
    expect(cart.statusCode).toBe(200)
  })

  it('when the password is wrong or the email unknown, then both answer the same 401 INVALID_CREDENTIALS', async () => {
    const email = freshEmail()
    await register(email)

    const wrongPassword = await login(email, 'not the password')
    const unknownEmail = await login(freshEmail())

    for (const response of [wrongPassword, unknownEmail]) {
      expect(response.statusCode).toBe(401)
      expect(response.json()).toMatchObject({ code: 'INVALID_CREDENTIALS' })
    }
    expect(wrongPassword.json()).toEqual(unknownEmail.json())
  })

  it('when a guest session is asked for, then it gets 201 and a guest customer token', async () => {
    const response = await app.inject({ method: 'POST', url: '/api/auth/guest' })

    expect(response.statusCode).toBe(201)
    expect(response.json()).toMatchObject({ user: { role: 'customer', isGuest: true } })
  })

  it('when there is no token or a garbage one, then a protected route answers 401 UNAUTHORIZED', async () => {
    const answers = [
      await app.inject({ url: '/api/cart' }),
      await app.inject({ url: '/api/cart', headers: { authorization: 'Bearer not.a.jwt' } }),
      await app.inject({ url: '/api/cart', headers: { authorization: 'Basic dXNlcjpwYXNz' } }),
    ]

    for (const response of answers) {
      expect(response.statusCode).toBe(401)
      expect(response.json()).toEqual({ code: 'UNAUTHORIZED', message: expect.any(String) })
    }
  })

  it('when a caller without a token sends an invalid body, then it is 401 before any body validation', async () => {
    const answers = [
      await app.inject({ method: 'POST', url: '/api/admin/products', payload: { priceCents: '1' } }),
      await app.inject({ method: 'PUT', url: '/api/cart/items/abc', payload: { quantity: 'two' } }),
      await app.inject({ method: 'POST', url: '/api/orders/not-a-uuid/pay' }),
    ]

    for (const response of answers) {
      expect(response.statusCode).toBe(401)
      expect(response.json()).toMatchObject({ code: 'UNAUTHORIZED' })
    }
  })

  it('when a customer calls an admin route, then it is 403 FORBIDDEN', async () => {
    const customer = await newCustomer(app)

    const response = await app.inject({
      method: 'POST',
      url: '/api/admin/products',
      headers: customer.headers,
      payload: { sku: `test-${randomUUID()}`, name: 'Nope', priceCents: 100, stock: 1 },
    })

    expect(response.statusCode).toBe(403)
    expect(response.json()).toMatchObject({ code: 'FORBIDDEN' })
  })

  it('when the password is a common one, eight spaces or the email itself, then it is 422 WEAK_PASSWORD and no account is made', async () => {
    const email = freshEmail()
    const answers = [
      await register(email, 'password'),
      await register(email, '        '),
      await register(email, email),
      await register(email, 'qwerty123'),
    ]

    for (const response of answers) {
      expect(response.statusCode, response.body).toBe(422)
      expect(response.json()).toMatchObject({ code: 'WEAK_PASSWORD', message: expect.any(String) })
    }
    expect((await login(email, 'password')).statusCode).toBe(401)
    expect((await register(email)).statusCode).toBe(201)
  })

  it('when the password is too short or the email is not an email, then it is 400 VALIDATION_FAILED', async () => {
    const shortPassword = await register(freshEmail(), 'short')
    const badEmail = await register('not-an-email')
    const badLogin = await login('not-an-email')

    for (const response of [shortPassword, badEmail, badLogin]) {
      expect(response.statusCode).toBe(400)
      expect(response.json()).toMatchObject({ code: 'VALIDATION_FAILED' })
    }
  })
})
