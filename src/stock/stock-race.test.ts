import type { FastifyInstance } from 'fastify'
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
import { STOCK_STRATEGIES } from '../config.js'

const BUYERS = 250
const UNITS = 5

/** Creates `count` customers, spread over the apps, in parallel batches. */
async function customers(apps: FastifyInstance[], count: number): Promise<TestUser[]> {
  const users: TestUser[] = []
  while (users.length < count) {
    const batch = Math.min(50, count - users.length)
    users.push(
      ...(await Promise.all(Array.from({ length: batch }, (_, i) => newCustomer(apps[i % apps.length]!)))),
    )
  }
  return users
}

async function checkoutAll(apps: FastifyInstance[], buyers: TestUser[]) {
  const answers = await Promise.all(
    buyers.map((buyer, i) =>
      apps[i % apps.length]!.inject({ method: 'POST', url: '/api/checkout', headers: buyer.headers }),
    ),
  )
  return answers.map((answer) => ({ status: answer.statusCode, code: answer.json<{ code?: string }>().code }))
}

async function ordersFor(app: FastifyInstance, productId: number): Promise<number> {
  const { rows } = await app.db.primary.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM order_items WHERE product_id = $1',
    [productId],
  )
  return rows[0]!.n
}

// Two app instances per strategy, like two PM2 workers sharing one Postgres.
describe.each(STOCK_STRATEGIES.filter((s) => s !== 'redis-gate'))('stock strategy %s', (strategy) => {
  let apps: FastifyInstance[]
  let admin: TestUser

  beforeAll(async () => {
    apps = await Promise.all([
      buildTestApp({ STOCK_STRATEGY: strategy }),
      buildTestApp({ STOCK_STRATEGY: strategy }),
    ])
    admin = await newAdmin(apps[0]!)
  })
  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()))
  })

  it(`when ${BUYERS} buyers race for ${UNITS} units, exactly ${UNITS} orders exist, available never drops below 0, and every loser hears OUT_OF_STOCK`, async () => {
    const productId = await newProduct(apps[0]!, admin, { stock: UNITS })
    const buyers = await customers(apps, BUYERS)
    await Promise.all(buyers.map((buyer, i) => fillCart(apps[i % 2]!, buyer, [{ productId, quantity: 1 }])))

    const answers = await checkoutAll(apps, buyers)

    const won = answers.filter((a) => a.status === 201)
    const lost = answers.filter((a) => a.status !== 201)
    expect(won).toHaveLength(UNITS)
    expect(lost.every((a) => a.status === 409 && a.code === 'OUT_OF_STOCK')).toBe(true)
    expect(await ordersFor(apps[0]!, productId)).toBe(won.length)
    // The CHECK constraints keep available >= 0 at every moment; a violation would have been a 5xx above.
    expect(await stockOf(apps[0]!, productId)).toEqual({
      onHand: UNITS,
      available: 0,
      reserved: UNITS,
      sold: 0,
    })
  })

  it('when multi-item checkouts race with their products added in opposite orders, none deadlocks and stock stays exact', async () => {
    const [a, b] = [
      await newProduct(apps[0]!, admin, { stock: 20 }),
      await newProduct(apps[0]!, admin, { stock: 20 }),
    ]
    const buyers = await customers(apps, 60)
    await Promise.all(
      buyers.map((buyer, i) =>
        fillCart(
          apps[i % 2]!,
          buyer,
          i % 2 === 0
            ? [
                { productId: a, quantity: 1 },
                { productId: b, quantity: 1 },
              ]
            : [
                { productId: b, quantity: 1 },
                { productId: a, quantity: 1 },
              ],
        ),
      ),
    )

    const answers = await checkoutAll(apps, buyers)

    expect(answers.filter((x) => x.status >= 500)).toEqual([])
    expect(answers.filter((x) => x.status === 201)).toHaveLength(20)
    expect(await stockOf(apps[0]!, a)).toEqual({ onHand: 20, available: 0, reserved: 20, sold: 0 })
    expect(await stockOf(apps[0]!, b)).toEqual({ onHand: 20, available: 0, reserved: 20, sold: 0 })
  })
})
