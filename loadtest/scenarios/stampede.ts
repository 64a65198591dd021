import type { ScenarioRun } from '../scenario.js'
import { openSale, runSaleScenario, type ScenarioContext } from './common.js'

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
  const opened = await openSale(ctx, params, { replayShare: params.replay, greedyShare: params.greedy })
  const { sale, buyers } = opened
  return runSaleScenario(ctx, 'stampede', params, opened, {
    connections: params.connections,
    durationSeconds: params.duration,
    requests: [
      {
        setupRequest: (request, context) => buyers.next(request, context, sale.id),
        onResponse: (status, body, context, headers) => buyers.record(status, body, headers, context),
      },
    ],
  })
}
