import { createLoadTestUsers } from '../../src/auth/load-test-users.js'
import type { Sale } from '../admin.js'
import { createBuyers } from '../buyers.js'
import { runLoad } from '../load.js'
import type { ScenarioRun } from '../scenario.js'
import { finishRun, saleEvidence, withMetrics, type LoadShape, type ScenarioContext } from './common.js'

// The contention matrix: the same crowd spread over 1, 10 or 1,000 stock rows (flash sales), so a
// strategy meets one hot row or many cold ones. Every request buys one unit of a row picked at random,
// as the next of `users` buyers; no row sells out during the run, so the rate measures the strategy
// under that contention, not the sold-out path. Conflicts and retries come from the app's counters.

export interface ContentionParams extends LoadShape {
  /** Stock rows the buyers spread over: 1 is one hot row. */
  rows: number
  /** Units over all rows, shared evenly: more than the run can sell. */
  units: number
  users: number
}

export const CONTENTION_DEFAULTS: ContentionParams = {
  connections: 200,
  duration: 5,
  rows: 10,
  units: 60_000,
  users: 4000,
}

/** Up to 100 units per buyer and sale: the per-user limit stays out of the way. */
const PER_USER_LIMIT = 100

export async function contention(ctx: ScenarioContext, params: ContentionParams): Promise<ScenarioRun> {
  const { target, admin } = ctx
  const unitsPerRow = Math.ceil(params.units / params.rows)
  const productId = await admin.loadTestProduct(target.db)
  const sales: Sale[] = []
  const openSeconds = Math.max(600, params.duration + 60)
  for (let i = 0; i < params.rows; i += 20) {
    const batch = Math.min(20, params.rows - i)
    await admin.restock(productId, batch * unitsPerRow)
    sales.push(
      ...(await Promise.all(
        Array.from({ length: batch }, () =>
          admin.createSale({
            productId,
            units: unitsPerRow,
            perUserLimit: PER_USER_LIMIT,
            priceCents: 999,
            openSeconds,
            restocked: true,
          }),
        ),
      )),
    )
  }
  const users = await createLoadTestUsers(target.db, target.config, params.users)
  ctx.log(`${sales.length} sales of ${unitsPerRow} units; ${users.length} buyers`)
  const buyers = createBuyers(users, {
    replayShare: 0,
    greedyShare: 0,
    units: params.units,
    limit: PER_USER_LIMIT,
  })
  const measured = await withMetrics(target, () =>
    runLoad({
      title: `contention x${params.rows}`,
      url: target.nginxUrl,
      connections: params.connections,
      durationSeconds: params.duration,
      onStart: (at) => buyers.start(at),
      progressNote: () => `${buyers.tally.created} orders`,
      requests: [
        {
          setupRequest: (request, context) =>
            buyers.next(request, context, sales[Math.floor(Math.random() * sales.length)]!.id),
          onResponse: (status, body, context, headers) => buyers.record(status, body, headers, context),
        },
      ],
    }),
  )
  return finishRun(ctx, {
    scenario: 'contention',
    params: { ...params },
    startedAt: measured.value.startedAt,
    load: measured.value,
    stock: [],
    metrics: measured.metrics,
    contention: { rows: params.rows, buyers },
    evidence: saleEvidence(
      sales.map((s) => s.id),
      users,
      buyers,
      measured.value,
    ),
  })
}
