// npm run race -- [--buyers 300] [--units 20] [--strategy optimistic|pessimistic|atomic|all]
//
// The cart-checkout race: B buyers, each with one unit in their cart, all check
// out at the same instant through nginx, for U units. Prints, per strategy: successes, OUT_OF_STOCK
// answers, anything else, stock conflicts and retries (from the merged metrics) and the burst's wall
// time. The stack restarts its workers with each strategy (only what changed is restarted).
import { parseArgs } from 'node:util'
import { Agent, fetch } from 'undici'
import { stackUp } from '../scripts/stack/stack.js'
import { createLoadTestUsers } from '../src/auth/load-test-users.js'
import type { StockStrategyName } from '../src/config.js'
import { AdminApi } from './admin.js'
import { parsePrometheusText, sumOf } from './prometheus.js'
import { loadStackOptions, loadTarget } from './target.js'

const { values } = parseArgs({
  options: {
    buyers: { type: 'string', default: '300' },
    units: { type: 'string', default: '20' },
    strategy: { type: 'string', default: 'all' },
  },
})
const buyers = Number(values.buyers)
const units = Number(values.units)
const strategies: StockStrategyName[] =
  values.strategy === 'all' ? ['optimistic', 'pessimistic', 'atomic'] : [values.strategy as StockStrategyName]

// One connection per buyer, so every checkout is on the wire at the same moment.
const dispatcher = new Agent({ connections: buyers + 10, pipelining: 0 })

async function stockMetrics(url: string, strategy: string) {
  const samples = parsePrometheusText(await (await fetch(url)).text())
  return {
    conflicts: sumOf(samples, 'stock_conflicts_total', { strategy }),
    retries: sumOf(samples, 'stock_retries_sum', { strategy }),
  }
}

for (const strategy of strategies) {
  const options = loadStackOptions(process.env, strategy)
  await stackUp(options, () => {})
  const target = loadTarget(options)
  try {
    const admin = await AdminApi.connect(target)
    const product = await admin.request<{ id: number }>('POST', '/api/admin/products', {
      sku: `race-${strategy}-${Date.now()}`,
      name: `Checkout race (${strategy})`,
      priceCents: 4999,
      stock: units,
    })
    const users = await createLoadTestUsers(target.db, target.config, buyers)
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
    const answers = await Promise.all(
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
    const histogram: Record<string, number> = {}
    for (const answer of answers) histogram[answer] = (histogram[answer] ?? 0) + 1
    const { rows } = await target.db.query<{ available: number; reserved: number; orders: number }>(
      `SELECT i.available, i.reserved, (SELECT count(*)::int FROM order_items WHERE product_id = $1) AS orders
         FROM inventory i WHERE i.product_id = $1`,
      [product.id],
    )
    const successes = histogram['201'] ?? 0
    const outOfStock = histogram['409 OUT_OF_STOCK'] ?? 0
    console.log(
      [
        `${strategy.padEnd(11)} ${buyers} buyers / ${units} units through nginx:`,
        `${successes} 201, ${outOfStock} OUT_OF_STOCK, ${buyers - successes - outOfStock} other`,
        `(${JSON.stringify(histogram)});`,
        `${after.conflicts - before.conflicts} conflicts, ${after.retries - before.retries} retries;`,
        `burst ${wallMs.toFixed(0)} ms;`,
        `Postgres: ${rows[0]!.orders} orders, available ${rows[0]!.available}, reserved ${rows[0]!.reserved}`,
      ].join(' '),
    )
    if (successes !== units || rows[0]!.orders !== units || rows[0]!.available !== 0) process.exitCode = 1
  } finally {
    await target.close()
  }
}
await dispatcher.close()
