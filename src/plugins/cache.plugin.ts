import fp from 'fastify-plugin'
import { createTwoLevelCache, type TwoLevelCache } from '../cache/two-level-cache.js'
import type { Config } from '../config.js'
import { duplicateForSubscribing } from '../redis/client.js'

declare module 'fastify' {
  interface FastifyInstance {
    cache: TwoLevelCache
  }
}

/** CACHE_MODE=off: every read goes to its loader, as if the cache did not exist. */
const uncached: TwoLevelCache = {
  family: () => ({ get: (_id, loader) => loader({ recentlyWritten: false }), invalidate: async () => {} }),
  start: async () => {},
  close: async () => {},
}

// The two-level cache (src/cache/two-level-cache.ts) for the whole worker: one L1, one subscriber.
// Use cases declare their own key families on it: `app.cache.family<Product>('product', policy)`.
export default fp(
  async (app, opts: { config: Config }) => {
    const { config } = opts
    if (config.CACHE_MODE === 'off') {
      app.decorate('cache', uncached)
      return
    }
    // Unlike the app's connection, the subscriber queues its SUBSCRIBE until Redis answers, and
    // ioredis subscribes again by itself after every reconnect.
    const subscriber = duplicateForSubscribing(app.redis)
    const cache = createTwoLevelCache({
      redis: app.redis,
      subscriber,
      metrics: app.metrics,
      log: app.log,
      // While a write is this fresh the replica may not have it yet: loaders read the primary. The
      // replica is used only under REPLICA_MAX_LAG_MS, measured every REPLICA_LAG_PROBE_MS.
      recentWriteMs: config.REPLICA_MAX_LAG_MS + 2 * config.REPLICA_LAG_PROBE_MS,
    })
    await cache.start()
    app.decorate('cache', cache)
    app.addHook('onClose', async () => cache.close())
  },
  { name: 'cache', dependencies: ['redis'] },
)
