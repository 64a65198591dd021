import os from 'node:os'
import { z } from 'zod'

// Every setting has an environment variable and a default that works with the local stack
// (`npm run stack:up`). The schema is the only place a setting is typed: `Config` is inferred from it.

const port = z.coerce.number().int().min(1).max(65535)
const positiveInt = z.coerce.number().int().positive()
const url = (protocols: string[]) =>
  z.url().refine((value) => protocols.some((p) => value.startsWith(`${p}://`)), {
    message: `must start with ${protocols.map((p) => `${p}://`).join(' or ')}`,
  })

export const STOCK_STRATEGIES = ['optimistic', 'pessimistic', 'atomic', 'redis-gate'] as const

const schema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  HOST: z.string().min(1).default('127.0.0.1'),
  // Base ports: worker N of the PM2 cluster listens on PORT + N and serves metrics on METRICS_PORT + N,
  // so nginx can balance over named upstreams and Prometheus can scrape each worker.
  PORT: port.default(23000),
  METRICS_PORT: port.default(29100),
  // The jobs process's own metrics, and the merged view of every worker's (/metrics/merged).
  JOBS_METRICS_PORT: port.default(29199),
  NODE_APP_INSTANCE: z.coerce.number().int().min(0).default(0),
  API_INSTANCES: positiveInt.default(Math.max(2, os.availableParallelism())),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  DATABASE_URL: url(['postgres', 'postgresql']).default(
    'postgres://stampede:stampede@127.0.0.1:25432/stampede',
  ),
  DATABASE_REPLICA_URL: url(['postgres', 'postgresql']).default(
    'postgres://stampede:stampede@127.0.0.1:25433/stampede',
  ),
  REDIS_URL: url(['redis', 'rediss']).default('redis://127.0.0.1:26379'),
  DB_POOL_MAX: positiveInt.default(20),
  DB_REPLICA_POOL_MAX: positiveInt.default(10),
  DB_STATEMENT_TIMEOUT_MS: positiveInt.default(5000),
  // Catalog reads use the replica only while its measured replay lag is under this bound; above it (or
  // with the replica down) they move to the primary until the lag is back under half of it.
  REPLICA_MAX_LAG_MS: positiveInt.default(1000),
  REPLICA_LAG_PROBE_MS: positiveInt.default(500),

  JWT_SECRET: z.string().min(32).default('stampede-local-development-secret-change-me'),
  JWT_TTL_SECONDS: positiveInt.default(24 * 3600),
  ADMIN_EMAIL: z.email().default('admin@stampede.local'),
  ADMIN_PASSWORD: z.string().min(8).default('stampede-admin'),

  STOCK_STRATEGY: z.enum(STOCK_STRATEGIES).default('optimistic'),
  // Retry budget for stock conflicts (optimistic version clash, pessimistic lock timeout): capped
  // exponential backoff with full jitter, until the buyer wins or sees the stock gone.
  STOCK_MAX_ATTEMPTS: positiveInt.default(60),
  STOCK_RETRY_BASE_MS: positiveInt.default(2),
  STOCK_RETRY_CAP_MS: positiveInt.default(50),
  STOCK_LOCK_TIMEOUT_MS: positiveInt.default(2000),
  RESERVATION_TTL_SECONDS: positiveInt.default(600),
  // The redis-gate strategy's write batching: at most this many orders per transaction, and how long
  // an idle worker waits for company before writing a lone order.
  ORDER_BATCH_MAX: positiveInt.default(128),
  ORDER_BATCH_WAIT_MS: z.coerce.number().int().min(0).default(2),
  ORDER_BATCH_CONCURRENCY: positiveInt.default(3),
  // How long an admitted reservation may stay unconfirmed before the reconciler returns its units.
  GATE_TOKEN_TTL_MS: positiveInt.default(30_000),
  RECONCILE_INTERVAL_MS: positiveInt.default(1000),
  // Purchase attempts allowed per second, per user and per sale, across all workers.
  RATE_LIMIT_USER_PER_SECOND: positiveInt.default(10),
  RATE_LIMIT_SALE_PER_SECOND: positiveInt.default(50_000),
  SWEEP_INTERVAL_MS: positiveInt.default(5000),
  // The simulated payment provider: how long a charge takes and how often it is declined (0..1).
  PAYMENT_LATENCY_MS: z.coerce.number().int().min(0).default(50),
  PAYMENT_FAILURE_RATE: z.coerce.number().min(0).max(1).default(0),
  BODY_LIMIT_BYTES: positiveInt.default(16 * 1024),
  // How long a stopping worker keeps answering (with `Connection: close`) before it closes.
  SHUTDOWN_DRAIN_MS: z.coerce.number().int().min(0).default(2000),

  // `off` sends every cached read straight to its loader (the database): for measuring what the
  // cache buys (`CACHE_MODE=off npm run load -- browse`), or ruling it out while debugging.
  CACHE_MODE: z.enum(['on', 'off']).default('on'),

  // The local stack (scripts/stack.ts). Postgres, replica and Redis ports come from the URLs above.
  STACK_DIR: z.string().min(1).default('.stack'),
  NGINX_PORT: port.default(28080),
  NGINX_ADMIN_PORT: port.default(28081),
})

export type Config = z.infer<typeof schema>
export type StockStrategyName = Config['STOCK_STRATEGY']

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
  }
}

/** Reads and validates the settings; a bad value throws a ConfigError naming the variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable means "not set", so `FOO= npm start` falls back to the default.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ''))
  const result = schema.safeParse(present)
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((issue) => {
        const name = issue.path.join('.')
        const value = env[name]
        return `${name}=${JSON.stringify(value)}: ${issue.message}`
      }),
    )
  }
  if (
    result.data.NODE_ENV === 'production' &&
    result.data.JWT_SECRET === schema.shape.JWT_SECRET.parse(undefined)
  ) {
    throw new ConfigError(['JWT_SECRET: must be set to a secret of your own when NODE_ENV=production'])
  }
  return result.data
}

/** For process entry points: a bad setting prints which variable is wrong and exits 1, no stack trace. */
export function loadConfigOrExit(): Config {
  try {
    return loadConfig()
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    console.error(err.message)
    process.exit(1)
  }
}
