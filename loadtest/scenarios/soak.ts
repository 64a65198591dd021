import { createLoadTestUsers } from '../../src/auth/load-test-users.js'
import { createBuyers } from '../buyers.js'
import { runLoad } from '../load.js'
import type { ScenarioRun } from '../scenario.js'
import { finishRun, saleEvidence, watchSale, withMetrics, type ScenarioContext } from './common.js'

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
  const { target, admin } = ctx
  const ids = (
    await target.db.query<{ id: number }>('SELECT id FROM products ORDER BY id LIMIT 30')
  ).rows.map((r) => r.id)
  const productId = await admin.loadTestProduct(target.db)
  const sale = await admin.createSale({
    productId,
    units: params.units,
    perUserLimit: params.limit,
    priceCents: 999,
    openSeconds: Math.max(600, params.duration + 60),
  })
  const users = await createLoadTestUsers(target.db, target.config, params.users)
  ctx.log(`sale ${sale.id}: ${params.units} units; ${users.length} buyers; ${params.rate} requests/s`)

  const buyers = createBuyers(users, {
    replayShare: 0.05,
    greedyShare: 0.02,
    units: params.units,
    limit: params.limit,
  })
  let startedAt = Date.now()
  let turn = 0
  const stock = watchSale(target, sale.id, () => startedAt)
  const { value: load, metrics } = await withMetrics(target, () =>
    runLoad({
      title: 'soak',
      url: target.nginxUrl,
      connections: params.connections,
      durationSeconds: params.duration,
      overallRate: params.rate,
      onStart: (at) => {
        startedAt = at
        buyers.start(at)
      },
      progressNote: () => `${stock.remaining() ?? params.units}/${params.units} units left`,
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
            if (context.purchase) buyers.record(status, body, headers)
          },
        },
      ],
    }),
  ).finally(() => stock.stop())

  return finishRun(ctx, {
    scenario: 'soak',
    params: { ...params },
    startedAt: load.startedAt,
    load,
    stock: stock.points(),
    metrics,
    sale: { view: sale, buyers },
    evidence: saleEvidence(sale.id, users, buyers, load),
  })
}
