import { Agent, fetch } from 'undici'
import { createLoadTestUsers } from '../../src/auth/load-test-users.js'
import type { AdminApi } from '../admin.js'
import { parsePrometheusText, sumOf } from '../prometheus.js'
import type { LoadTarget } from '../target.js'

// The cart-checkout race: `buyers` buyers, each with one unit of the same product in their cart, all
// check out at the same instant through nginx, for `units` units. Every loser must hear OUT_OF_STOCK,
// and Postgres must end with exactly `units` orders.

export interface RaceResult {
  strategy: string
  buyers: number
  units: number
  /** Answers by status and code: {"201": 20, "409 OUT_OF_STOCK": 280}. */
  answers: Record<string, number>
  conflicts: number
  retries: number
  /** From the first checkout sent to the last answer. */
  wallMs: number
  orders: number
  available: number
  ok: boolean
}

async function stockMetrics(url: string, strategy: string) {
  const samples = parsePrometheusText(await (await fetch(url)).text())
  return {
    conflicts: sumOf(samples, 'stock_conflicts_total', { strategy }),
    retries: sumOf(samples, 'stock_retries_sum', { strategy }),
  }
}

export async function checkoutRace(
  target: LoadTarget,
  admin: AdminApi,
  strategy: string,
  options: { buyers: number; units: number },
): Promise<RaceResult> {
  // One connection per buyer, so every checkout is on the wire at the same moment.
  const dispatcher = new Agent({ connections: options.buyers + 10, pipelining: 0 })
  try {
    const product = await admin.request<{ id: number }>('POST', '/api/admin/products', {
      sku: `race-${strategy}-${Date.now()}`,
      name: `Checkout race (${strategy})`,
      priceCents: 4999,
      stock: options.units,
    })
    const users = await createLoadTestUsers(target.db, target.config, options.buyers)
    const headersOf = (token: string) => ({
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
    })
    // Every buyer puts one unit in the cart (If-Match "0": a new cart), before the race starts.
    await Promise.all(
      users.map(async (user) => {
        const response = await fetch(`${target.nginxUrl}/api/cart/items/${product.id}`, {
          method: 'PUT',
          headers: { ...headersOf(user.token), 'if-match': '"0"' },
          body: JSON.stringify({ quantity: 1 }),
          dispatcher,
        })
        if (response.status !== 200)
          throw new Error(`filling a cart: ${response.status} ${await response.text()}`)
      }),
    )
    const before = await stockMetrics(target.metrics.merged, strategy)

    const started = performance.now()
    const statuses = await Promise.all(
      users.map(async (user) => {
        const response = await fetch(`${target.nginxUrl}/api/checkout`, {
          method: 'POST',
          headers: { authorization: `Bearer ${user.token}` },
          dispatcher,
        })
        const body = (await response.json()) as { code?: string }
        return response.status === 201 ? '201' : `${response.status} ${body.code}`
      }),
    )
    const wallMs = performance.now() - started

    const after = await stockMetrics(target.metrics.merged, strategy)
    const answers: Record<string, number> = {}
    for (const status of statuses) answers[status] = (answers[status] ?? 0) + 1
    const { rows } = await target.db.query<{ available: number; orders: number }>(
      `SELECT i.available, (SELECT count(*)::int FROM order_items WHERE product_id = $1) AS orders
         FROM inventory i WHERE i.product_id = $1`,
      [product.id],
    )
    const wins = answers['201'] ?? 0
    const losses = answers['409 OUT_OF_STOCK'] ?? 0
    return {
      strategy,
      buyers: options.buyers,
      units: options.units,
      answers,
      conflicts: after.conflicts - before.conflicts,
      retries: after.retries - before.retries,
      wallMs,
      orders: rows[0]!.orders,
      available: rows[0]!.available,
      ok: wins === options.units && losses === options.buyers - wins && rows[0]!.orders === options.units,
    }
  } finally {
    await dispatcher.close()
  }
}
