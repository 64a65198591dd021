import type pg from 'pg'
import { loadConfig, type Config, type StockStrategyName } from '../src/config.js'
import { createPool } from '../src/db/pool.js'
import { stackOptionsFromEnv, stackUrls, type StackOptions } from '../scripts/stack/stack.js'
import type { MetricsSource } from './prometheus.js'

// What a load run talks to: nginx (public and admin), the primary (users, verification) and the metrics
// endpoints, plus the settings the workers run with (JWT secret, limits). Built from the local stack's
// options, so `npm run load`, the bench, the demo and the smoke test all aim at the same kind of thing.

export interface LoadTarget {
  nginxUrl: string
  adminUrl: string
  /** The workers' settings as far as the stack gives them (appEnv over the environment). */
  config: Config
  metrics: MetricsSource
  /** The primary: users are created and invariants checked here, never through the app. */
  db: pg.Pool
  close(): Promise<void>
}

/**
 * The rate limits a load test runs with. Everything comes from one loopback address and a few thousand
 * users, so nginx's per-address limit_req and the app's per-user limit would measure themselves, not the
 * sale. Values given in the environment win.
 */
export const LOAD_TEST_NGINX_LIMITS = {
  NGINX_BUY_RATE: '100000r/s',
  NGINX_BUY_BURST: '100000',
  NGINX_LOGIN_RATE: '100000r/s',
  NGINX_LOGIN_BURST: '100000',
}

/** The dev stack with load-test limits and the given stock strategy; stackUp restarts what changed. */
export function loadStackOptions(
  env: NodeJS.ProcessEnv,
  strategy: StockStrategyName,
  overrides: { apiInstances?: number } = {},
): StackOptions {
  return stackOptionsFromEnv(
    { ...LOAD_TEST_NGINX_LIMITS, ...env },
    {
      ...overrides,
      appEnv: {
        STOCK_STRATEGY: strategy,
        RATE_LIMIT_USER_PER_SECOND: env.RATE_LIMIT_USER_PER_SECOND || '1000000',
        // Request logs cost a worker about as much as a cached read: a load run keeps warnings only.
        LOG_LEVEL: env.LOG_LEVEL || 'warn',
        CACHE_MODE: env.CACHE_MODE || 'on',
      },
    },
  )
}

export function loadTarget(options: StackOptions, env: NodeJS.ProcessEnv = process.env): LoadTarget {
  const urls = stackUrls(options)
  const config = loadConfig({ ...env, ...options.appEnv, DATABASE_URL: urls.databaseUrl })
  const db = createPool(urls.databaseUrl, 4, config, 'loadtest')
  return {
    nginxUrl: urls.nginxUrl,
    adminUrl: urls.nginxAdminUrl,
    config,
    metrics: {
      merged: `http://127.0.0.1:${options.ports.jobsMetrics}/metrics/merged`,
      workers: urls.metrics,
    },
    db,
    close: () => db.end(),
  }
}
