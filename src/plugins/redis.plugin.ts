import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import type { Config } from '../config.js'
import { connectWithin, createRedis, timeCommands } from '../redis/client.js'

declare module 'fastify' {
  interface FastifyInstance {
    redis: Redis
  }
}

// The worker's Redis connection (src/redis/client.ts), timed per command and closed with the app.
export default fp(
  async (app, opts: { config: Config }) => {
    const redis = createRedis(opts.config)
    timeCommands(redis, app.metrics.redisCommandSeconds)
    redis.on('error', (err) => app.log.warn({ err }, 'Redis connection error'))
    // A lost connection and the one that replaces it are rare and worth a line each: after a failover
    // they say when this worker moved, and to which server.
    redis.on('reconnecting', (inMs: number) => app.log.warn({ inMs }, 'Redis connection lost; reconnecting'))
    redis.on('ready', () => app.log.info({ server: redis.stream?.remoteAddress }, 'Redis connection ready'))
    if (!(await connectWithin(redis, 2000))) app.log.warn('Redis did not answer at start-up; still trying')
    app.decorate('redis', redis)
    app.addHook('onClose', async () => {
      redis.disconnect()
    })
  },
  { name: 'redis', dependencies: ['metrics'] },
)
