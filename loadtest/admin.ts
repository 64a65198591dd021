import { createSigner } from 'fast-jwt'
import { jwtSecretOf } from '../src/config.js'
import type { Sale } from '../src/sales/sale.js'
import type { SaleAuditReport } from '../src/sales/sales.service.js'
import type { LoadTarget } from './target.js'

// The admin side of a load run, through nginx's loopback admin server like an operator: a product to sell,
// stock for it, the sale, and the sale's invariant report. The token is signed here with the app's secret
// for the seeded admin, so a run never depends on the admin's password.

// The API's own shapes: a load run reads exactly what the app answers.
export type { Sale } from '../src/sales/sale.js'
export type { SaleAuditReport as SaleAudit } from '../src/sales/sales.service.js'

/** The product load runs sell, created once: the demo catalogue's stock is left to the storefront. */
export const LOAD_TEST_SKU = 'loadtest-flash-unit'

/** nginx or a worker said "not now" (502-504): worth asking again. */
class UnavailableError extends Error {}

export class AdminApi {
  private constructor(
    private readonly baseUrl: string,
    private readonly token: string,
  ) {}

  static async connect(target: LoadTarget): Promise<AdminApi> {
    const { rows } = await target.db.query<{ id: string }>(
      `SELECT id FROM users WHERE email = $1 AND role = 'admin'`,
      [target.config.ADMIN_EMAIL.toLowerCase()],
    )
    if (!rows[0]) throw new Error(`no admin ${target.config.ADMIN_EMAIL} in the database: was it seeded?`)
    const sign = createSigner({ key: jwtSecretOf(target.config), expiresIn: 3600 * 1000 })
    return new AdminApi(target.adminUrl, sign({ sub: rows[0].id, role: 'admin', guest: false }))
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    // A GET is safe to repeat: after a fault, nginx may still count the workers as down for a moment.
    for (let attempt = 1; method === 'GET'; attempt++) {
      try {
        return await this.send<T>(method, path, body)
      } catch (error) {
        if (attempt >= 10 || !(error instanceof UnavailableError)) throw error
        await new Promise((resolve) => setTimeout(resolve, 500))
      }
    }
    return this.send<T>(method, path, body)
  }

  private async send<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.token}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    })
    const text = await response.text()
    if (!response.ok) {
      const message = `${method} ${path}: ${response.status} ${text.slice(0, 200)}`
      throw response.status >= 502 && response.status <= 504
        ? new UnavailableError(message)
        : new Error(message)
    }
    return JSON.parse(text) as T
  }

  /** The load-test product's id, creating it on first use (the SKU is unique, so a race is harmless). */
  async loadTestProduct(db: LoadTarget['db']): Promise<number> {
    const find = async () =>
      (await db.query<{ id: number }>('SELECT id FROM products WHERE sku = $1', [LOAD_TEST_SKU])).rows[0]?.id
    const existing = await find()
    if (existing !== undefined) return existing
    try {
      const created = await this.request<{ id: number }>('POST', '/api/admin/products', {
        sku: LOAD_TEST_SKU,
        name: 'Stampede load-test unit',
        description: 'Sold by npm run load, bench and demo; restocked before every run.',
        priceCents: 1999,
        stock: 0,
      })
      return created.id
    } catch (error) {
      const raced = await find()
      if (raced !== undefined) return raced
      throw error
    }
  }

  restock(productId: number, quantity: number): Promise<unknown> {
    return this.request('POST', `/api/admin/products/${productId}/restock`, { quantity })
  }

  /** A sale open from now for `openSeconds`, with `units` taken from the product (restocked first). */
  async createSale(input: {
    productId: number
    units: number
    perUserLimit: number
    priceCents: number
    openSeconds: number
    /** When the sale opens, from now; -1 (open already) unless given. openSeconds counts from now. */
    startsInSeconds?: number
    /** The caller restocked the product for this sale already (several sales at once). */
    restocked?: boolean
    /** The sale's waiting room; none unless given. */
    queue?: 'fifo' | 'raffle'
  }): Promise<Sale> {
    if (!input.restocked) await this.restock(input.productId, input.units)
    const now = Date.now()
    return this.request<Sale>('POST', '/api/admin/sales', {
      productId: input.productId,
      priceCents: input.priceCents,
      units: input.units,
      perUserLimit: input.perUserLimit,
      startsAt: new Date(now + (input.startsInSeconds ?? -1) * 1000).toISOString(),
      endsAt: new Date(now + input.openSeconds * 1000).toISOString(),
      ...(input.queue && { queue: input.queue }),
    })
  }

  audit(saleId: number): Promise<SaleAuditReport> {
    return this.request<SaleAuditReport>('GET', `/api/admin/sales/${saleId}/audit`)
  }
}
