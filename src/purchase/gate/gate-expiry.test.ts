import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, newAdmin, newSale, type TestUser } from '../../../test/support/app.js'
import { purchase } from '../../../test/support/purchase.js'
import { createLoadTestUsers } from '../../auth/load-test-users.js'

const keysOf = (saleId: number) => ({
  gate: `sale:{${saleId}}:gate`,
  users: `sale:{${saleId}}:users`,
  released: `sale:{${saleId}}:released`,
})

/** The sale's end, as Postgres holds it, in ms since the epoch. */
async function endsAtMs(app: FastifyInstance, saleId: number): Promise<number> {
  const { rows } = await app.db.primary.query<{ ends_at: Date }>(
    'SELECT ends_at FROM flash_sales WHERE id = $1',
    [saleId],
  )
  return rows[0]!.ends_at.getTime()
}

// Redis must not keep every sale ever held: a sale's gate keys expire together after the sale ended.
describe('gate keys expire after their sale', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp({ STOCK_STRATEGY: 'redis-gate' })
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await app.close()
  })

  it('when a sale is bought from and an order cancelled, then its gate, users and released keys all expire GATE_KEPT_AFTER_END_SECONDS after the sale ends', async () => {
    const saleId = await newSale(app, admin, { units: 5 })
    const [buyer] = await createLoadTestUsers(app.db.primary, app.config, 1)
    const bought = await purchase(app, buyer!, saleId)
    expect(bought.statusCode).toBe(201)
    const cancelled = await app.inject({
      method: 'POST',
      url: `/api/orders/${bought.json<{ id: string }>().id}/cancel`,
      headers: { authorization: `Bearer ${buyer!.token}` },
    })
    expect(cancelled.statusCode).toBe(200)

    const expected = (await endsAtMs(app, saleId)) + app.config.GATE_KEPT_AFTER_END_SECONDS * 1000
    const k = keysOf(saleId)
    for (const key of [k.gate, k.users, k.released]) {
      // PEXPIRETIME: the absolute expiry, so the check does not depend on when it runs.
      expect(await app.redis.call('PEXPIRETIME', key), key).toBe(expected)
    }
  })

  it('when a sale that ended long ago is asked for again after its keys expired, then the buyer hears that it ended and the rebuilt gate lives about a minute, not for ever', async () => {
    const saleId = await newSale(app, admin, { units: 5 })
    const [buyer] = await createLoadTestUsers(app.db.primary, app.config, 1)
    await app.db.primary.query(
      `UPDATE flash_sales SET starts_at = now() - interval '2 hours', ends_at = now() - interval '1 hour'
        WHERE id = $1`,
      [saleId],
    )
    // What expiry does, GATE_KEPT_AFTER_END_SECONDS after the end.
    await app.redis.del(...Object.values(keysOf(saleId)))

    const answer = await purchase(app, buyer!, saleId)

    expect(answer.statusCode).toBe(409)
    expect(answer.json<{ code: string }>().code).toBe('SALE_NOT_ACTIVE')
    const ttl = Number(await app.redis.pttl(keysOf(saleId).gate))
    expect(ttl).toBeGreaterThan(0)
    expect(ttl).toBeLessThanOrEqual(60_000)
  })
})
