import type { Redis, Result } from 'ioredis'
import { RateLimitedError } from '../errors.js'
import { luaScript } from '../redis/lua.js'

declare module 'ioredis' {
  interface RedisCommander<Context> {
    fixedWindow(numberOfKeys: number, ...keysAndArgs: (string | number)[]): Result<number, Context>
  }
}

export interface Limit {
  /** What is limited, e.g. `user:<id>` or `sale:<id>`. */
  scope: string
  perWindow: number
}

/**
 * Rate limits shared by every worker: counters live in Redis, one per scope and time window, so a
 * user gets the same allowance whichever worker nginx sends them to.
 */
export function createRateLimiter(redis: Redis, windowMs = 1000) {
  // One definition per connection, shared by every limiter on it (each with its own window).
  if (!Object.hasOwn(redis, 'fixedWindow')) {
    redis.defineCommand('fixedWindow', { lua: luaScript('fixed-window.lua', import.meta.url) })
  }
  return {
    /** Counts one request against every limit; throws RateLimitedError (429, Retry-After) past any. */
    async check(limits: Limit[]): Promise<void> {
      const now = Date.now()
      const window = Math.floor(now / windowMs)
      const keys = limits.map((limit) => `rl:${limit.scope}:${window}`)
      const exceeded = await redis.fixedWindow(
        keys.length,
        ...keys,
        windowMs,
        ...limits.map((l) => l.perWindow),
      )
      if (exceeded > 0) throw new RateLimitedError((window + 1) * windowMs - now)
    },
  }
}

export type RateLimiter = ReturnType<typeof createRateLimiter>
