import { setTimeout as sleep } from 'node:timers/promises'
import { StockConflictError } from '../errors.js'

export interface RetryPolicy {
  maxAttempts: number
  baseMs: number
  capMs: number
}

export interface RetryOutcome<T> {
  value: T
  retries: number
}

/**
 * Runs `attempt` until it does not throw StockConflictError, at most `maxAttempts` times. Between
 * tries it sleeps a random time in [0, min(cap, base * 2^n)] ("full jitter"): losers spread out
 * instead of colliding again in lockstep, and the cap keeps a loser from sleeping past the sell-out.
 * Every attempt re-reads the stock, so a loser either wins later or sees the stock gone (409
 * OUT_OF_STOCK); only a spent budget while stock remains surfaces the conflict itself.
 */
export async function retryStockConflicts<T>(
  policy: RetryPolicy,
  attempt: () => Promise<T>,
  onConflict: () => void = () => {},
): Promise<RetryOutcome<T>> {
  for (let retries = 0; ; retries++) {
    try {
      return { value: await attempt(), retries }
    } catch (err) {
      if (!(err instanceof StockConflictError) || retries + 1 >= policy.maxAttempts) throw err
      onConflict()
      await sleep(Math.random() * Math.min(policy.capMs, policy.baseMs * 2 ** retries))
    }
  }
}
