import { setTimeout as sleep } from 'node:timers/promises'
import type { Config } from '../config.js'
import { StockConflictError } from '../errors.js'
import type { Metrics } from '../metrics.js'

export interface RetryPolicy {
  maxAttempts: number
  baseMs: number
  capMs: number
}

export function retryPolicyOf(config: Config): RetryPolicy {
  return {
    maxAttempts: config.STOCK_MAX_ATTEMPTS,
    baseMs: config.STOCK_RETRY_BASE_MS,
    capMs: config.STOCK_RETRY_CAP_MS,
  }
}

export interface RetryHooks {
  onConflict(): void
  onSettled(retries: number): void
}

/** stock_conflicts_total and the stock_retries histogram, for every decision, won or lost. */
export function countedIn(metrics: Metrics, strategy: string): RetryHooks {
  return {
    onConflict: () => metrics.stockConflicts.inc({ strategy }),
    onSettled: (retries: number) => metrics.stockRetries.observe({ strategy }, retries),
  }
}

/**
 * Runs `attempt` until it does not throw a conflict (StockConflictError unless `isConflict` says
 * otherwise), at most `maxAttempts` times. Between tries it sleeps a random time in
 * [0, min(cap, base * 2^n)] ("full jitter"): losers spread out instead of colliding again in lockstep, and the cap keeps a loser from sleeping past the sell-out.
 * Every attempt re-reads the stock, so a loser either wins later or sees the stock gone (409
 * OUT_OF_STOCK); only a spent budget while stock remains surfaces the conflict itself.
 */
export async function retryStockConflicts<T>(
  policy: RetryPolicy,
  attempt: () => Promise<T>,
  hooks: RetryHooks,
  isConflict: (err: unknown) => boolean = (err) => err instanceof StockConflictError,
): Promise<T> {
  let retries = 0
  try {
    for (;;) {
      try {
        return await attempt()
      } catch (err) {
        if (!isConflict(err) || retries + 1 >= policy.maxAttempts) throw err
        hooks.onConflict()
        await sleep(Math.random() * Math.min(policy.capMs, policy.baseMs * 2 ** retries))
        retries++
      }
    }
  } finally {
    hooks.onSettled(retries)
  }
}
