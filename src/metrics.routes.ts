import type { FastifyInstance } from 'fastify'

export default async function metricsRoutes(app: FastifyInstance) {
  // Prometheus text format. nginx's public server refuses /metrics; only the loopback admin server
  // and Prometheus reach it.
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) =>
    reply.type(app.metrics.registry.contentType).send(await app.metrics.registry.metrics()),
  )
}
