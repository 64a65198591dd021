import type pg from 'pg'
import { loadConfig, type Config, type StockStrategyName } from '../src/config.js'
import { createPool } from '../src/db/pool.js'
import { stackJwtSecret, stackOptionsFromEnv, stackUrls, type StackOptions } from '../scripts/stack/stack.js'
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
 * The limits a load test runs with. Everything comes from one loopback address standing for thousands
 * of buyers, so nginx's per-address limit_req and limit_conn and the app's per-user and per-address
 * limits would measure themselves, not the sale. Values given in the environment win.
 */
export const LOAD_TEST_NGINX_LIMITS = {
  NGINX_BUY_RATE: '100000r/s',
  NGINX_BUY_BURST: '100000',
  NGINX_LOGIN_RATE: '100000r/s',
  NGINX_LOGIN_BURST: '100000',
  NGINX_SIGNUP_RATE: '100000r/s',
  NGINX_SIGNUP_BURST: '100000',
  NGINX_STREAMS_PER_ADDRESS: '65535',
}

/** The app's per-user and per-address limits, raised for the same reason. */
export const LOAD_TEST_APP_LIMITS = {
  RATE_LIMIT_USER_PER_SECOND: '1000000',
  RATE_LIMIT_SIGNUP_PER_MINUTE: '1000000',
  SSE_MAX_STREAMS_PER_WORKER: '100000',
  // A waiting room's lease (60 s by default): short, so a run sees abandoned places lapse and the queue
  // go on within its time.
  WAITING_ROOM_LEASE_SECONDS: '10',
}

/** The dev stack with load-test limits and the given stock strategy; stackUp restarts what changed. */
export function loadStackOptions(
  env: NodeJS.ProcessEnv,
  strategy: StockStrategyName,
  overrides: { apiInstances?: number; durablePostgres?: boolean } = {},
): StackOptions {
  return stackOptionsFromEnv(
    { ...LOAD_TEST_NGINX_LIMITS, ...env },
    { ...overrides, appEnv: loadTestAppEnv(env, strategy) },
  )
}

/** The workers' settings for a load run, on the local stack and in containers alike. */
export function loadTestAppEnv(env: NodeJS.ProcessEnv, strategy: StockStrategyName): Record<string, string> {
  return {
    STOCK_STRATEGY: strategy,
    ...appLimitsFrom(env),
    // Request logs cost a worker about as much as a cached read: a load run keeps warnings only.
    LOG_LEVEL: env.LOG_LEVEL || 'warn',
    CACHE_MODE: env.CACHE_MODE || 'on',
  }
}

/** LOAD_TEST_APP_LIMITS, each unless the environment sets it. */
function appLimitsFrom(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(
    Object.entries(LOAD_TEST_APP_LIMITS).map(([name, raised]) => [name, env[name] || raised]),
  )
}

export function loadTarget(options: StackOptions, env: NodeJS.ProcessEnv = process.env): LoadTarget {
  const urls = stackUrls(options)
  const config = loadConfig({
    ...env,
    ...options.appEnv,
    DATABASE_URL: urls.databaseUrl,
    JWT_SECRET: stackJwtSecret(options),
  })
  return targetWith(config, urls.databaseUrl, {
    nginxUrl: urls.nginxUrl,
    adminUrl: urls.nginxAdminUrl,
    metrics: {
      merged: `http://127.0.0.1:${options.ports.jobsMetrics}/metrics/merged`,
      workers: urls.metrics,
    },
  })
}

/**
 * A load target that is not the local stack: nginx and its admin server at the given addresses, the
 * primary at its URL, and the settings the app was given. In containers (docker-compose.yml) per-worker
 * metrics are not published; on the HA profile (scripts/stack/ha/) every app host's worker serves its own.
 * The merged view comes through the admin server either way.
 */
export function remoteTarget(
  urls: { nginxUrl: string; adminUrl: string; databaseUrl: string; workerMetrics?: string[] },
  appEnv: Record<string, string>,
  env: NodeJS.ProcessEnv = process.env,
): LoadTarget {
  const config = loadConfig({ ...env, ...appEnv, DATABASE_URL: urls.databaseUrl })
  return targetWith(config, urls.databaseUrl, {
    nginxUrl: urls.nginxUrl,
    adminUrl: urls.adminUrl,
    metrics: { merged: `${urls.adminUrl}/metrics`, workers: urls.workerMetrics ?? [] },
  })
}

/**
 * A target's own small pool on the primary, for the verifier's queries, beside the given addresses. Its
 * statements may run up to a minute: they read a whole run (thousands of keys and orders) on a machine
 * still busy with it, and a verifier that times out proves nothing about the app (the app's own pools
 * keep DB_STATEMENT_TIMEOUT_MS).
 */
const VERIFIER_STATEMENT_TIMEOUT_MS = 60_000

function targetWith(
  config: Config,
  databaseUrl: string,
  addresses: Pick<LoadTarget, 'nginxUrl' | 'adminUrl' | 'metrics'>,
): LoadTarget {
  const db = createPool(
    databaseUrl,
    4,
    { ...config, DB_STATEMENT_TIMEOUT_MS: VERIFIER_STATEMENT_TIMEOUT_MS },
    'loadtest',
  )
  // An idle connection whose server went away (a fault case stops the primary) emits 'error' on the
  // pool; unhandled, it would end the load test itself. The next query simply opens a new connection.
  db.on('error', () => undefined)
  return { ...addresses, config, db, close: () => db.end() }
}
