import { createLoadTestUsers } from '../../src/auth/load-test-users.js'
import { createBuyers } from '../buyers.js'
import { runLoad } from '../load.js'
import type { ScenarioRun } from '../scenario.js'
import { finishLoadOnly, withMetrics, type ScenarioContext } from './common.js'

// The yardsticks every ratio is taken to, measured in the same run with the same connections.
// - GET: GET /health/live through the same nginx and PM2 path. No I/O in the worker, so it measures the
//   path itself (nginx, the upstream keepalive, Fastify's routing). Reads are measured against it.
// - POST: POST /api/ceiling, an authenticated JSON POST of a purchase's size, sent by the same buyer
//   machinery as a purchase (each request its buyer's own token and a fresh Idempotency-Key, the same
//   body), through the same nginx location as purchases (limit_req, headers). The worker checks the
//   token and the body and answers, nothing more. Purchases are measured against it: what a purchase
//   costs beyond it is the cost of buying.

export interface CeilingParams {
  connections: number
  duration: number
}

export const CEILING_DEFAULTS: CeilingParams = { connections: 200, duration: 10 }

export interface PostCeilingParams extends CeilingParams {
  /** Distinct users (tokens) the requests rotate through. */
  users: number
}

export const POST_CEILING_DEFAULTS: PostCeilingParams = { connections: 200, duration: 10, users: 2000 }

export async function ceiling(ctx: ScenarioContext, params: CeilingParams): Promise<ScenarioRun> {
  const measured = await withMetrics(ctx.target, () =>
    runLoad({
      title: 'ceiling',
      url: ctx.target.nginxUrl,
      connections: params.connections,
      durationSeconds: params.duration,
      requests: [{ method: 'GET', path: '/health/live' }],
    }),
  )
  return finishLoadOnly(ctx, 'ceiling', params, measured)
}

export async function postCeiling(ctx: ScenarioContext, params: PostCeilingParams): Promise<ScenarioRun> {
  const users = await createLoadTestUsers(ctx.target.db, ctx.target.config, params.users)
  const buyers = createBuyers(users, { replayShare: 0, greedyShare: 0, units: 1, limit: 1 })
  const measured = await withMetrics(ctx.target, () =>
    runLoad({
      title: 'post ceiling',
      url: ctx.target.nginxUrl,
      connections: params.connections,
      durationSeconds: params.duration,
      requests: [
        {
          setupRequest: (request, context) => {
            buyers.next(request, context, 0)
            request.path = '/api/ceiling'
            return request
          },
        },
      ],
    }),
  )
  return finishLoadOnly(ctx, 'post-ceiling', params, measured)
}
