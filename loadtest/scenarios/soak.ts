import type { ScenarioRun } from '../scenario.js'
import { openSale, runSaleScenario, type ScenarioContext } from './common.js'

// A steady mixed load at a constant rate (autocannon's overallRate) for a longer time: 60% product pages,
// 15% sale pages, 25% purchases on a sale big enough to last a while. It looks for what only time shows:
// latency creeping up, pools or memory filling, reservations piling up, drift after hours of small sales.

export interface SoakParams {
  rate: number
  duration: number
  connections: number
  units: number
  users: number
  limit: number
}

export const SOAK_DEFAULTS: SoakParams = {
  rate: 200,
  duration: 60,
  connections: 20,
  units: 1000,
  users: 1000,
  limit: 2,
}

export async function soak(ctx: ScenarioContext, params: SoakParams): Promise<ScenarioRun> {
  const ids = (
    await ctx.target.db.query<{ id: number }>('SELECT id FROM products ORDER BY id LIMIT 30')
  ).rows.map((r) => r.id)
  const opened = await openSale(ctx, params, { replayShare: 0.05, greedyShare: 0.02 })
  const { sale, buyers } = opened
  ctx.log(`${params.rate} requests/s`)
  let turn = 0
  return runSaleScenario(ctx, 'soak', params, opened, {
    connections: params.connections,
    durationSeconds: params.duration,
    overallRate: params.rate,
    requests: [
      {
        setupRequest: (request, context) => {
          const slot = turn++ % 20
          context.purchase = slot >= 15
          if (slot >= 15) return buyers.next(request, context, sale.id)
          request.method = 'GET'
          request.headers = {}
          request.path = slot >= 12 ? `/api/sales/${sale.id}` : `/api/products/${ids[turn % ids.length]}`
          return request
        },
        onResponse: (status, body, context, headers) => {
          if (context.purchase) buyers.record(status, body, headers, context)
        },
      },
    ],
  })
}
