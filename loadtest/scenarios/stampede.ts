import { createLoadTestUsers } from '../../src/auth/load-test-users.js'
import { createBuyers } from '../buyers.js'
import { runLoad } from '../load.js'
import type { ScenarioRun } from '../scenario.js'
import { finishRun, saleEvidence, watchSale, withMetrics, type ScenarioContext } from './common.js'

// The flash sale: `units` units, `users` distinct buyers with their own tokens, `connections` at once.
// Everyone tries to buy one unit; some retry with the same Idempotency-Key, a greedy few try past their
// limit. The run measures how fast the sale sells out and what every buyer was told, and the verifier
// then checks that exactly `units` units were sold, once each.

export interface StampedeParams {
  units: number
  users: number
  connections: number
  duration: number
  /** Units one user may hold. */
  limit: number
  /** Share of requests that resend the previous Idempotency-Key. */
  replay: number
  /** Share of turns taken by the greedy 1% of users. */
  greedy: number
}

export const STAMPEDE_DEFAULTS: StampedeParams = {
  units: 100,
  users: 2000,
  connections: 200,
  duration: 10,
  limit: 2,
  replay: 0.1,
  greedy: 0.1,
}

export async function stampede(ctx: ScenarioContext, params: StampedeParams): Promise<ScenarioRun> {
  const { target, admin } = ctx
  const productId = await admin.loadTestProduct(target.db)
  const sale = await admin.createSale({
    productId,
    units: params.units,
    perUserLimit: params.limit,
    priceCents: 999,
    openSeconds: Math.max(600, params.duration + 60),
  })
  ctx.log(`sale ${sale.id}: ${params.units} units, limit ${params.limit} per user`)
  const users = await createLoadTestUsers(target.db, target.config, params.users)
  ctx.log(`${users.length} buyers with their own tokens`)

  const buyers = createBuyers(users, {
    replayShare: params.replay,
    greedyShare: params.greedy,
    units: params.units,
    limit: params.limit,
  })
  let startedAt = Date.now()
  const stock = watchSale(target, sale.id, () => startedAt)
  const { value: load, metrics } = await withMetrics(target, () =>
    runLoad({
      title: 'stampede',
      url: target.nginxUrl,
      connections: params.connections,
      durationSeconds: params.duration,
      onStart: (at) => {
        startedAt = at
        buyers.start(at)
      },
      progressNote: () => `${stock.remaining() ?? params.units}/${params.units} units left`,
      requests: [
        {
          setupRequest: (request, context) => buyers.next(request, context, sale.id),
          onResponse: (status, body, _context, headers) => buyers.record(status, body, headers),
        },
      ],
    }),
  ).finally(() => stock.stop())

  return finishRun(ctx, {
    scenario: 'stampede',
    params: { ...params },
    startedAt: load.startedAt,
    load,
    stock: stock.points(),
    metrics,
    sale: { view: sale, buyers },
    evidence: saleEvidence(sale.id, users, buyers, load),
  })
}
