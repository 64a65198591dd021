import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  buildTestApp,
  fillCart,
  newAdmin,
  newCustomer,
  newProduct,
  newRegisteredCustomer,
  type TestUser,
} from '../../test/support/app.js'
import { deleteIdleGuests } from './users.repository.js'

// Guest accounts cost nothing to make; the ones that never ordered are deleted after GUEST_TTL_HOURS
// by the jobs process, so a flood of them does not stay in the users table for ever.

describe('guest expiry', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp()
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await app.close()
  })

  const backdate = (user: TestUser, hours: number) =>
    app.db.primary.query(`UPDATE users SET created_at = now() - make_interval(hours => $2) WHERE id = $1`, [
      user.id,
      hours,
    ])
  const exists = async (user: TestUser) =>
    (await app.db.primary.query('SELECT 1 FROM users WHERE id = $1', [user.id])).rowCount === 1

  it('when a guest without orders is older than the TTL, then it is deleted with its cart; guests with orders, fresh guests and registered accounts stay', async () => {
    const productId = await newProduct(app, admin, { stock: 5 })
    const [idle, buyer, fresh, registered] = [
      await newCustomer(app),
      await newCustomer(app),
      await newCustomer(app),
      await newRegisteredCustomer(app),
    ]
    await fillCart(app, idle, [{ productId, quantity: 1 }])
    await fillCart(app, buyer, [{ productId, quantity: 1 }])
    expect(
      (await app.inject({ method: 'POST', url: '/api/checkout', headers: buyer.headers })).statusCode,
    ).toBe(201)
    for (const user of [idle, buyer, registered]) await backdate(user, 24 * 365 * 10)
    await backdate(fresh, 47)

    while ((await deleteIdleGuests(app.db.primary, 48, 1000)) === 1000);

    expect(await exists(idle)).toBe(false)
    expect([await exists(buyer), await exists(fresh), await exists(registered)]).toEqual([true, true, true])
    const carts = await app.db.primary.query('SELECT 1 FROM carts WHERE user_id = $1', [idle.id])
    expect(carts.rowCount).toBe(0)
  })

  it('when many guests are due, then one call deletes at most its batch size', async () => {
    const guests = await Promise.all(Array.from({ length: 3 }, () => newCustomer(app)))
    for (const guest of guests) await backdate(guest, 24 * 365 * 20)

    expect(await deleteIdleGuests(app.db.primary, 48, 2)).toBeLessThanOrEqual(2)
    while ((await deleteIdleGuests(app.db.primary, 48, 2)) > 0);
    expect(await Promise.all(guests.map(exists))).toEqual([false, false, false])
  })
})
