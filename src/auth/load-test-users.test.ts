import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp } from '../../test/support/app.js'
import { createLoadTestUsers } from './load-test-users.js'

describe('load-test users', () => {
  let app: FastifyInstance
  beforeAll(async () => {
    app = await buildTestApp()
  })
  afterAll(async () => {
    await app.close()
  })

  it('when tokens are minted for many users, then each is a distinct customer the API accepts', async () => {
    const users = await createLoadTestUsers(app.db.primary, app.config, 200)

    expect(new Set(users.map((u) => u.id)).size).toBe(200)
    for (const user of [users[0]!, users[199]!]) {
      const cart = await app.inject({ url: '/api/cart', headers: { authorization: `Bearer ${user.token}` } })
      expect(cart.statusCode).toBe(200)
    }
    const admin = await app.inject({
      url: '/api/admin/products',
      method: 'POST',
      headers: { authorization: `Bearer ${users[0]!.token}` },
    })
    expect(admin.statusCode).toBe(403)
  })
})
