import pg from 'pg'
import type { StackHandles, StackOptions, StackUrls } from '../../scripts/stack/stack.js'
import type { AdminApi } from '../admin.js'
import { LOAD_TEST_APP_LIMITS, type LoadTarget } from '../target.js'

// What every lab is: run a broken variant, then the real code, and say for each what it showed. The
// runner (runner.ts) brings up the labs' own stack, runs the labs and decides pass or fail.

/**
 * The labs' settings: load-test limits (one address plays a crowd), and gate tokens that expire in
 * seconds with a reconciler that runs often, so the worker-kill lab sees the tokens come back.
 */
export const LABS_APP_ENV: Record<string, string> = {
  ...LOAD_TEST_APP_LIMITS,
  GATE_TOKEN_TTL_MS: '3000',
  RECONCILE_INTERVAL_MS: '500',
  LOG_LEVEL: 'warn',
  STOCK_STRATEGY: 'redis-gate',
}

export interface LabContext {
  options: StackOptions
  urls: StackUrls
  handles: StackHandles
  target: LoadTarget
  admin: AdminApi
  /** Smaller numbers, for the test run: the same lesson in fewer seconds. */
  quick: boolean
  log(message: string): void
  /** Restarts the workers with these settings on top of the labs' own (only what changed restarts). */
  withAppEnv(appEnv: Record<string, string>): Promise<void>
}

/**
 * A pool of the lab's own, beside the app's. An idle client whose server goes away (labs stop and kill
 * servers) makes the pool emit 'error', and an 'error' nobody listens to crashes the whole run: the lab
 * ignores it, and sees the failure in the query it makes next.
 */
export function labPool(config: pg.PoolConfig): pg.Pool {
  const pool = new pg.Pool(config)
  pool.on('error', () => undefined)
  return pool
}

/** One variant's outcome: the line that shows it, and whether it did what the lab expects of it. */
export interface VariantResult {
  line: string
  /** Broken variant: it visibly broke. Fixed variant: it held. */
  asExpected: boolean
}

export interface LabResult {
  broken: VariantResult
  fixed: VariantResult
}

export interface Lab {
  name: string
  /** One line: what breaks, and what fixes it. */
  title: string
  run(ctx: LabContext): Promise<LabResult>
}
