import { runLoad } from '../load.js'
import type { ScenarioRun } from '../scenario.js'
import { finishLoadOnly, withMetrics, type LoadShape, type ScenarioContext } from './common.js'

// The cache path: product pages over a few dozen ids (GET /api/products/:id, served from each worker's
// L1, else Redis L2, else the replica), and a share of sale pages (GET /api/sales/:id: the fixed facts
// from the replica, the units left from the gate).

export interface BrowseParams extends LoadShape {
  /** How many different products are read, round robin. */
  products: number
  /** Share of requests that read the latest sale's page instead of a product. */
  saleShare: number
}

export const BROWSE_DEFAULTS: BrowseParams = { connections: 200, duration: 10, products: 30, saleShare: 0.1 }

export async function browse(ctx: ScenarioContext, params: BrowseParams): Promise<ScenarioRun> {
  const ids = (
    await ctx.target.db.query<{ id: number }>('SELECT id FROM products ORDER BY id LIMIT $1', [
      params.products,
    ])
  ).rows.map((r) => r.id)
  if (ids.length === 0) throw new Error('no products: was the database seeded?')
  let saleId = (await ctx.target.db.query<{ id: number | null }>('SELECT max(id) AS id FROM flash_sales'))
    .rows[0]?.id
  if (params.saleShare > 0 && !saleId) {
    const productId = await ctx.admin.loadTestProduct(ctx.target.db)
    saleId = (
      await ctx.admin.createSale({ productId, units: 1, perUserLimit: 1, priceCents: 999, openSeconds: 600 })
    ).id
  }
  ctx.log(`${ids.length} products${params.saleShare > 0 ? `, sale ${saleId}` : ''}`)

  let n = 0
  const measured = await withMetrics(ctx.target, () =>
    runLoad({
      title: 'browse',
      url: ctx.target.nginxUrl,
      connections: params.connections,
      durationSeconds: params.duration,
      requests: [
        {
          method: 'GET',
          setupRequest: (request) => {
            const turn = n++
            const saleTurn = Math.floor((turn + 1) * params.saleShare) > Math.floor(turn * params.saleShare)
            request.path = saleTurn ? `/api/sales/${saleId}` : `/api/products/${ids[turn % ids.length]}`
            return request
          },
        },
      ],
    }),
  )
  return finishLoadOnly(ctx, 'browse', params, measured)
}
