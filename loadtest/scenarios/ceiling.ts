import { runLoad } from '../load.js'
import type { ScenarioRun } from '../scenario.js'
import { finishLoadOnly, withMetrics, type ScenarioContext } from './common.js'

// The reference for every ratio: GET /health/live through the same nginx and PM2 path, with the same
// connections. It does no I/O in the worker, so it measures the path itself (nginx, the upstream
// keepalive, Fastify's routing) on this machine, in this run.

export interface CeilingParams {
  connections: number
  duration: number
}

export const CEILING_DEFAULTS: CeilingParams = { connections: 200, duration: 10 }

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
