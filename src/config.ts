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

/**
 * The JWT secret the tests sign with. It is in this repository for anyone to read, so every process
 * refuses it outside NODE_ENV=test (see jwtSecretOf): `npm run stack:up` gives each stack folder a
 * random secret of its own, and production sets JWT_SECRET.
 */
export const TEST_JWT_SECRET = 'stampede-tests-only-secret-refused-unless-node-env-is-test'

// A list of `host:port` given as text, separated by commas: `10.0.0.1:26379,10.0.0.2:26379`.
const hostPorts = z.string().transform((value, ctx) =>
  value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '')
    .flatMap((item) => {
      const match = /^(.+):(\d{1,5})$/.exec(item)
      const portNumber = Number(match?.[2])
      if (!match || portNumber < 1 || portNumber > 65535) {
        ctx.addIssue({ code: 'custom', message: `"${item}" is not host:port` })
        return []
      }
      return [{ host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port: portNumber }]
    }),
)

// A switch given as text: 1/true/on or 0/false/off.
const flag = z
  .enum(['1', 'true', 'on', '0', 'false', 'off'])
  .transform((value) => ['1', 'true', 'on'].includes(value))

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
  // Redis Sentinels to ask where the primary is (host:port, comma-separated); empty: REDIS_URL's host is
  // the server. With sentinels, REDIS_URL still gives the password (and database) of the data nodes,
  // its host and port are not used, and a failover moves every connection to the promoted replica.
  REDIS_SENTINELS: hostPorts.default([]),
  // The name the sentinels monitor the primary under (`sentinel monitor <name> ...`).
  REDIS_SENTINEL_NAME: z.string().min(1).default('stampede'),
  // How long one Redis command may take before it fails: a paused or stuck Redis then costs a buyer a
  // quick 503, not a request that hangs until nginx gives up. Redis answers in well under a millisecond.
  REDIS_COMMAND_TIMEOUT_MS: positiveInt.default(1000),
  DB_POOL_MAX: positiveInt.default(20),
  DB_REPLICA_POOL_MAX: positiveInt.default(10),
  DB_STATEMENT_TIMEOUT_MS: positiveInt.default(5000),
  // Catalog reads use the replica only while its measured replay lag is under this bound; above it (or
  // with the replica down) they move to the primary until the lag is back under half of it.
  REPLICA_MAX_LAG_MS: positiveInt.default(1000),
  REPLICA_LAG_PROBE_MS: positiveInt.default(500),

  JWT_SECRET: z.string().min(32).default(TEST_JWT_SECRET),
  JWT_TTL_SECONDS: positiveInt.default(24 * 3600),
  // How long a worker remembers that a token's user exists (the answer to "valid signature, deleted
  // user" without a database round trip per request): a deleted user's token works at most this long.
  KNOWN_USER_TTL_SECONDS: positiveInt.default(600),
  // Guest accounts with no order are deleted this long after they were made. Longer than JWT_TTL_SECONDS
  // by default, so a guest is only ever deleted once its token has expired.
  GUEST_TTL_HOURS: positiveInt.default(48),
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
  // Backpressure on the gate path: past this many admitted buyers waiting in one worker's batch queue,
  // a new purchase on that worker answers 503 with Retry-After before the gate script runs, so no unit
  // is taken for a buyer whose order cannot be written soon (about 10 batches of ORDER_BATCH_MAX).
  ORDER_QUEUE_MAX: positiveInt.default(1280),
  // How long an admitted reservation may stay unconfirmed before the reconciler returns its units.
  GATE_TOKEN_TTL_MS: positiveInt.default(30_000),
  // How long a sale's gate keys stay in Redis after the sale ends; the reconciler looks after a sale
  // for half of it. Then they expire, so Redis does not keep every sale ever held.
  GATE_KEPT_AFTER_END_SECONDS: positiveInt.default(1800),
  RECONCILE_INTERVAL_MS: positiveInt.default(1000),
  // A sale's waiting room (docs/waiting-room.md): at most this many admitted buyers who have not bought yet
  // per unit left (k), how long an admitted buyer has to buy (the lease), and how often the jobs process
  // admits the next places.
  WAITING_ROOM_ADMIT_FACTOR: z.coerce.number().min(1).max(10).default(1.5),
  WAITING_ROOM_LEASE_SECONDS: positiveInt.default(60),
  WAITING_ROOM_ROUND_MS: positiveInt.default(250),
  // Purchase attempts allowed per second, per user and per sale, across all workers.
  RATE_LIMIT_USER_PER_SECOND: positiveInt.default(10),
  RATE_LIMIT_SALE_PER_SECOND: positiveInt.default(50_000),
  // Accounts (registrations and guests together) one client address may create per minute, across all
  // workers. nginx limits the same per address (NGINX_SIGNUP_RATE); this holds without nginx too.
  RATE_LIMIT_SIGNUP_PER_MINUTE: positiveInt.default(20),
  // Live-event streams (SSE) one worker keeps open; past it a new stream is answered 503 TOO_MANY_STREAMS.
  // nginx caps streams per client address too (NGINX_STREAMS_PER_ADDRESS).
  SSE_MAX_STREAMS_PER_WORKER: positiveInt.default(1000),
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
  // Adds `X-Worker: api-<n>` to every answer, to watch nginx spread requests. Off by default: it tells a
  // stranger how many workers there are and which one answered.
  DEBUG_WORKER_HEADER: flag.default(false),

  // The local stack (scripts/stack.ts). Postgres, replica and Redis ports come from the URLs above.
  STACK_DIR: z.string().min(1).default('.stack'),
  NGINX_PORT: port.default(28080),
  NGINX_ADMIN_PORT: port.default(28081),
})

export type Config = z.infer<typeof schema>

/** The name of every setting: what a process reads from its environment. */
export const CONFIG_KEYS = Object.keys(schema.shape) as (keyof Config)[]
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
  // Concurrency: a guest is deleted only after every token it was given has expired, so no request of
  // its own can race the deletion (an order inserted for a user being deleted).
  if (result.data.GUEST_TTL_HOURS * 3600 <= result.data.JWT_TTL_SECONDS) {
    throw new ConfigError([
      `GUEST_TTL_HOURS=${JSON.stringify(env.GUEST_TTL_HOURS)}: must be longer than JWT_TTL_SECONDS (${result.data.JWT_TTL_SECONDS} s)`,
    ])
  }
  return result.data
}

/**
 * The secret to sign and verify tokens with. The published test secret is refused unless NODE_ENV=test:
 * with it, anyone could sign a token for any user, admin included. Only processes that sign or verify
 * tokens ask for it, so `npm run migrate` and the stack scripts run without a secret.
 */
export function jwtSecretOf(config: Config): string {
  if (config.JWT_SECRET === TEST_JWT_SECRET && config.NODE_ENV !== 'test') {
    throw new ConfigError([
      'JWT_SECRET: set a secret of your own (at least 32 characters); the built-in one is for tests only',
    ])
  }
  return config.JWT_SECRET
}

/**
 * For process entry points: a bad setting prints which variable is wrong and exits 1, no stack trace.
 * `signsTokens`: the process signs or verifies tokens, so it needs a JWT secret of its own.
 */
export function loadConfigOrExit(options: { signsTokens?: boolean } = {}): Config {
  try {
    const config = loadConfig()
    if (options.signsTokens) jwtSecretOf(config)
    return config
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    console.error(err.message)
    process.exit(1)
  }
}
