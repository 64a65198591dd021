import fp from 'fastify-plugin'

declare module 'fastify' {
  interface FastifyInstance {
    /** True once the worker has been asked to stop: it still answers, but asks clients to reconnect. */
    readonly draining: boolean
    startDraining(): void
  }
}

// Concurrency: zero-downtime reload. A stopping worker keeps answering for a short window but adds
// `Connection: close`, so nginx drops its keep-alive connections to this worker and sends the next
// request elsewhere. Closing at once instead would cut requests already on their way to this worker.
export default fp(
  async (app) => {
    let draining = false
    app.decorate('draining', {
      getter: () => draining,
    })
    app.decorate('startDraining', () => {
      draining = true
    })
    app.addHook('onRequest', async (_request, reply) => {
      if (draining) reply.header('connection', 'close')
    })
  },
  { name: 'drain' },
)
