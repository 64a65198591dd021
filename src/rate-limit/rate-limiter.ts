import type { Redis, Result } from 'ioredis'
import { RateLimitedError } from '../errors.js'
import { defineScripts } from '../redis/scripts.js'

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
 * Rate limits shared by every worker: counters live in Redis, one per scope, each for one window from
 * its first request, timed by Redis' clock (the counter's expiry). A user gets the same allowance
 * whichever worker nginx sends them to, and workers whose clocks disagree share the same windows.
 */
export function createRateLimiter(redis: Redis, windowMs = 1000) {
  defineScripts(redis, import.meta.url, { fixedWindow: { file: 'fixed-window.lua' } })
  return {
    /** The length of one fixed window (ms). */
    windowMs,
    /** Counts one request against every limit; throws RateLimitedError (429, Retry-After) past any. */
    async check(limits: Limit[]): Promise<void> {
      const keys = limits.map((limit) => `rl:${limit.scope}`)
      const msLeft = await redis.fixedWindow(
        keys.length,
        ...keys,
        windowMs,
        ...limits.map((l) => l.perWindow),
      )
      if (msLeft > 0) throw new RateLimitedError(msLeft)
    },
  }
}

export type RateLimiter = ReturnType<typeof createRateLimiter>
