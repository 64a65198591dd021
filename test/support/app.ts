import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { randomUUID } from 'node:crypto'
import { buildApp } from '../../src/app.js'
import { insertUserIfEmailFree } from '../../src/auth/users.repository.js'
import { loadConfig, type Config } from '../../src/config.js'
import type { ReleaseHooks } from '../../src/orders/order-release.js'
import { createGateWiring } from '../../src/purchase-wiring.js'
import type { SaleAuditReport } from '../../src/sales/sales.service.js'

/**
 * Builds the real app against the test stack's servers (the global setup put their URLs in
 * process.env). `overrides` are environment variables, e.g. `{ STOCK_STRATEGY: 'atomic' }`. Every test
 * makes its own accounts from one address, so the per-address signup limit is raised unless overridden.
 */
export async function buildTestApp(overrides: Record<string, string> = {}): Promise<FastifyInstance> {
  const config: Config = loadConfig({
    ...process.env,
    PAYMENT_LATENCY_MS: '0',
    RATE_LIMIT_SIGNUP_PER_MINUTE: '1000000',
    ...overrides,
  })
  const app = await buildApp(config, { logger: false })
  // Ready now, so that several instances in one test start racing at the same moment.
  await app.ready()
  return app
}

export interface TestUser {
  id: string
  token: string
  headers: { authorization: string }
}

/** A fresh customer (a guest account): every test makes its own users. */
export async function newCustomer(app: FastifyInstance): Promise<TestUser> {
  const response = await app.inject({ method: 'POST', url: '/api/auth/guest' })
  const { token, user } = response.json<{ token: string; user: { id: string } }>()
  return { id: user.id, token, headers: { authorization: `Bearer ${token}` } }
}

/** A fresh registered customer (email and password), for what guests may not do. */
export async function newRegisteredCustomer(app: FastifyInstance): Promise<TestUser> {
  const response = await app.inject({
    method: 'POST',
    url: '/api/auth/register',
    payload: { email: `user-${randomUUID()}@test.stampede.local`, password: 'correct horse battery' },
  })
  if (response.statusCode !== 201) throw new Error(`registering failed: ${response.body}`)
  const { token, user } = response.json<{ token: string; user: { id: string } }>()
  return { id: user.id, token, headers: { authorization: `Bearer ${token}` } }
}

export async function newAdmin(app: FastifyInstance): Promise<TestUser> {
  const user = await insertUserIfEmailFree(app.db.primary, {
    email: `admin-${randomUUID()}@test.stampede.local`,
    passwordHash: null,
    role: 'admin',
    isGuest: true,
  })
  const token = app.jwt.sign({ sub: user!.id, role: 'admin', guest: true })
  return { id: user!.id, token, headers: { authorization: `Bearer ${token}` } }
}

/** Creates a product with its own stock (a description and a picture when given) through the admin API; returns its id. */
export async function newProduct(
  app: FastifyInstance,
  admin: TestUser,
  product: { stock: number; priceCents?: number; name?: string; description?: string; imageUrl?: string },
): Promise<number> {
  const response = await app.inject({
    method: 'POST',
    url: '/api/admin/products',
    headers: admin.headers,
    payload: {
      sku: `test-${randomUUID()}`,
      ...product,
      name: product.name ?? 'Test product',
      priceCents: product.priceCents ?? 1000,
    },
  })
  if (response.statusCode !== 201) throw new Error(`creating a product failed: ${response.body}`)
  return response.json<{ id: number }>().id
}

/** Puts `quantity` of each product in the user's cart (reading the ETag first, as a client would). */
export async function fillCart(
  app: FastifyInstance,
  user: TestUser,
  lines: { productId: number; quantity: number }[],
): Promise<void> {
  let etag = (await app.inject({ url: '/api/cart', headers: user.headers })).headers.etag as string
  for (const line of lines) {
    const response: LightMyRequestResponse = await app.inject({
      method: 'PUT',
      url: `/api/cart/items/${line.productId}`,
      headers: { ...user.headers, 'if-match': etag },
      payload: { quantity: line.quantity },
    })
    if (response.statusCode !== 200) throw new Error(`filling the cart failed: ${response.body}`)
    etag = response.headers.etag as string
  }
}

export interface StockRow {
  onHand: number
  available: number
  reserved: number
  sold: number
}

/** The authority's view of a product's stock, read from the primary. */
export async function stockOf(app: FastifyInstance, productId: number): Promise<StockRow> {
  const { rows } = await app.db.primary.query<StockRow>(
    `SELECT on_hand AS "onHand", available, reserved, sold FROM inventory WHERE product_id = $1`,
    [productId],
  )
  return rows[0]!
}

/** Opens a flash sale of `units` units (taken from a fresh product) that runs for the next hour. */
export async function newSale(
  app: FastifyInstance,
  admin: TestUser,
  sale: {
    units: number
    perUserLimit?: number
    priceCents?: number
    startsInMs?: number
    registeredOnly?: boolean
    /** The sale's waiting room (src/purchase/queue/); none unless given. */
    queue?: 'fifo' | 'raffle'
    /** The waiting room's proof of work (the most numbers a client may try); none unless given. */
    queueDifficulty?: number
    /** The product's name, for tests that find the sale by what a shopper reads. */
    productName?: string
    /** How long the sale runs; an hour unless given. */
    durationMs?: number
  },
): Promise<number> {
  const productId = await newProduct(app, admin, {
    stock: sale.units,
    priceCents: 5000,
    ...(sale.productName === undefined ? {} : { name: sale.productName }),
  })
  const startsAt = Date.now() + (sale.startsInMs ?? -1000)
  const response = await app.inject({
    method: 'POST',
    url: '/api/admin/sales',
    headers: admin.headers,
    payload: {
      productId,
      priceCents: sale.priceCents ?? 1999,
      units: sale.units,
      perUserLimit: sale.perUserLimit ?? 1,
      ...(sale.registeredOnly === undefined ? {} : { registeredOnly: sale.registeredOnly }),
      ...(sale.queue === undefined ? {} : { queue: sale.queue }),
      ...(sale.queueDifficulty === undefined ? {} : { queueDifficulty: sale.queueDifficulty }),
      startsAt: new Date(startsAt).toISOString(),
      endsAt: new Date(startsAt + (sale.durationMs ?? 3600_000)).toISOString(),
    },
  })
  if (response.statusCode !== 201) throw new Error(`creating a sale failed: ${response.body}`)
  return response.json<{ id: number }>().id
}

export async function auditOf(
  app: FastifyInstance,
  admin: TestUser,
  saleId: number,
): Promise<SaleAuditReport> {
  const response = await app.inject({ url: `/api/admin/sales/${saleId}/audit`, headers: admin.headers })
  return response.json<SaleAuditReport>()
}

/**
 * The audit once nothing is in flight in the sale's gate (or after 2 s, as it then stands). The gate
 * path answers its buyers at COMMIT and confirms their tokens in Redis right after: an audit taken the
 * moment the answers arrive may still count them in flight.
 */
export async function settledAuditOf(
  app: FastifyInstance,
  admin: TestUser,
  saleId: number,
): Promise<SaleAuditReport> {
  const deadline = Date.now() + 2000
  for (;;) {
    const audit = await auditOf(app, admin, saleId)
    if (!audit.inFlight || Date.now() > deadline) return audit
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** The release hooks the jobs process uses, for tests that run the expiry sweeper themselves. */
export function releaseHooksOf(app: FastifyInstance): ReleaseHooks {
  return createGateWiring({
    config: app.config,
    primary: app.db.primary,
    redis: app.redis,
    log: app.log,
  }).releaseHooks()
}
