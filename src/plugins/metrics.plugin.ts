import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { createMetrics, type Metrics } from '../metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
  interface FastifyReply {
    /** The `code` of an error answer's body, set by the error handler; counted in http_errors_total. */
    errorCode: string
  }
}

// The worker's metrics, and the request-duration histogram every route feeds. The route label is
// the template (/api/products/:id), never the raw URL, so there is one series per route, not per id.
// The metrics are served on a port of their own (src/metrics-server.ts), not through the app.
export default fp(
  async (app, opts: { config: Config }) => {
    const worker = `api-${opts.config.NODE_APP_INSTANCE}`
    const metrics = createMetrics(worker)
    app.decorate('metrics', metrics)
    app.decorateReply('errorCode', '')
    // Which worker answered, only when DEBUG_WORKER_HEADER asks: it shows nginx spreading the requests,
    // and would tell anyone else how many workers there are.
    if (opts.config.DEBUG_WORKER_HEADER) {
      app.addHook('onSend', async (_request, reply) => {
        reply.header('x-worker', worker)
      })
    }
    app.addHook('onResponse', async (request, reply) => {
      metrics.httpDuration.observe(
        {
          method: request.method,
          route: request.routeOptions.url ?? 'unmatched',
          status_code: reply.statusCode,
        },
        reply.elapsedTime / 1000,
      )
      if (reply.statusCode >= 400) {
        metrics.httpErrors.inc({ status_code: reply.statusCode, code: reply.errorCode || 'UNKNOWN' })
      }
    })
  },
  { name: 'metrics' },
)
