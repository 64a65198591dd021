import { mkdirSync, rmSync } from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import { loadConfig } from '../../src/config.js'
import { migrate } from '../../src/db/migrate.js'
import { seed } from '../../src/demo/seed.js'
import { buildApp } from './build.js'
import {
  ensureNginx,
  nginxLimitsFromEnv,
  nginxPid,
  reloadNginx,
  stopNginx,
  type NginxLimits,
  type NginxSetup,
} from './nginx.js'
import { createPostgresRoot, existingPostgresRoot, postgresPaths, REPO_ROOT, stackPaths } from './paths.js'
import { ensureApp, listApp, pm2, stopApp, type AppSetup } from './pm2.js'
import {
  ensurePrometheus,
  prometheusStatus,
  PROMETHEUS_PORT,
  stopPrometheus,
  type PrometheusSetup,
  type PrometheusStatus,
} from './prometheus.js'
import {
  crashCluster,
  ensurePrimary,
  ensureReplica,
  ensureStreamingReplica,
  postgresPid,
  replicaLogSize,
  stopCluster,
  superuserClient,
  waitForStreaming,
  type PostgresSetup,
} from './postgres.js'
import { httpStatus, type Log } from './process.js'
import { ensureRedis, redisPid, redisPing, stopRedis, type RedisSetup } from './redis.js'
import { stackFolderJwtSecret } from './secrets.js'
import { ensureSystemPackages, postgresBinDir, type SystemServer } from './system-packages.js'

// The local stack as a library: `npm run stack:*` (scripts/stack.ts), the test global setup and the
// load-test runner all bring it up and down through these functions.

export type ServiceName = 'primary' | 'replica' | 'redis'

export interface StackPorts {
  primary: number
  replica: number
  redis: number
  /** Worker N listens on api + N and serves metrics on metrics + N. */
  api: number
  metrics: number
  /** The jobs process's metrics and the merged view of all workers. */
  jobsMetrics: number
  nginx: number
  nginxAdmin: number
  prometheus: number
}

export interface StackOptions {
  /** Names the stack in logs and in postgres' process titles: 'dev', 'test'. */
  name: string
  /** Absolute path of the stack's folder. */
  dir: string
  ports: StackPorts
  apiInstances: number
  /** What this stack starts. A service given by an external URL is never started. */
  services: {
    postgres: boolean
    replica: boolean
    redis: boolean
    app: boolean
    nginx: boolean
    /** Only where Debian's `prometheus` package is installed: the stack never installs it. */
    prometheus: boolean
  }
  /** Servers the user runs (DATABASE_URL, DATABASE_REPLICA_URL, REDIS_URL set in the environment). */
  external: { databaseUrl?: string; replicaUrl?: string; redisUrl?: string }
  nginxLimits: NginxLimits
  /** Postgres with fsync, full_page_writes and synchronous_commit on (the benchmark); off for tests and the demo. */
  durablePostgres: boolean
  /** JWT_SECRET when the environment sets it; otherwise the stack uses its folder's own (stackJwtSecret). */
  givenJwtSecret: string | undefined
  /** Settings the workers get on top of the stack's own (LOG_LEVEL, STOCK_STRATEGY, ...). */
  appEnv: Record<string, string>
  ecosystem: string
}

export interface StackUrls {
  databaseUrl: string
  replicaUrl: string
  redisUrl: string
  nginxUrl: string
  nginxAdminUrl: string
  workers: string[]
  metrics: string[]
}

export interface ServiceStatus {
  url: string
  up: boolean
}

export interface StackStatus {
  nginx: ServiceStatus & { adminUrl: string; adminUp: boolean }
  workers: ServiceStatus[]
  metrics: ServiceStatus[]
  primary: ServiceStatus
  replica: ServiceStatus
  redis: ServiceStatus
  prometheus: PrometheusStatus
}

export interface StackOverrides {
  name?: string
  /** Relative to the repository root, or absolute. Default: STACK_DIR. */
  dir?: string
  /** Added to every default port, so a second stack (the tests') runs beside the first. */
  portOffset?: number
  ports?: Partial<StackPorts>
  apiInstances?: number
  services?: Partial<StackOptions['services']>
  appEnv?: Record<string, string>
  ecosystem?: string
  durablePostgres?: boolean
}

/** The stack described by the environment (src/config.ts settings) plus overrides. */
export function stackOptionsFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  overrides: StackOverrides = {},
): StackOptions {
  const config = loadConfig(env)
  // The local servers' ports come from the default URLs; a URL set in the environment is an external server.
  const defaults = loadConfig({})
  const offset = overrides.portOffset ?? 0
  const portOf = (url: string) => Number(new URL(url).port)
  const given = (name: string) => Boolean(env[name])
  const external = {
    databaseUrl: given('DATABASE_URL') ? config.DATABASE_URL : undefined,
    replicaUrl: given('DATABASE_REPLICA_URL') ? config.DATABASE_REPLICA_URL : undefined,
    redisUrl: given('REDIS_URL') ? config.REDIS_URL : undefined,
  }
  return {
    name: overrides.name ?? 'dev',
    dir: path.resolve(REPO_ROOT, overrides.dir ?? config.STACK_DIR),
    ports: {
      primary: portOf(defaults.DATABASE_URL) + offset,
      replica: portOf(defaults.DATABASE_REPLICA_URL) + offset,
      redis: portOf(defaults.REDIS_URL) + offset,
      api: config.PORT + offset,
      metrics: config.METRICS_PORT + offset,
      jobsMetrics: config.JOBS_METRICS_PORT + offset,
      nginx: config.NGINX_PORT + offset,
      nginxAdmin: config.NGINX_ADMIN_PORT + offset,
      prometheus: PROMETHEUS_PORT + offset,
      ...overrides.ports,
    },
    apiInstances: overrides.apiInstances ?? config.API_INSTANCES,
    services: {
      postgres: !external.databaseUrl,
      // A local replica can only follow a local primary.
      replica: !external.replicaUrl && !external.databaseUrl,
      redis: !external.redisUrl,
      app: true,
      nginx: true,
      prometheus: true,
      ...overrides.services,
    },
    external,
    nginxLimits: nginxLimitsFromEnv(env),
    durablePostgres: overrides.durablePostgres ?? false,
    givenJwtSecret: env.JWT_SECRET || undefined,
    appEnv: overrides.appEnv ?? {},
    ecosystem: overrides.ecosystem ?? path.join(REPO_ROOT, 'ecosystem.config.cjs'),
  }
}

/**
 * The two stacks of a checkout: `dev` (npm run stack:*) and `test` (vitest's global setup), which lives
 * in <STACK_DIR>/test with every port + STACK_TEST_PORT_OFFSET (100), so a second checkout's tests can run
 * beside this one's with another offset. The test stack runs the app and nginx unless STACK_TEST_APP=0.
 */
export function stackProfile(profile: 'dev' | 'test', env: NodeJS.ProcessEnv = process.env): StackOptions {
  if (profile === 'dev') return stackOptionsFromEnv(env)
  const withApp = env.STACK_TEST_APP !== '0'
  // Tests make a fresh account for every case, from one address: the test stack raises the per-address
  // signup limits (nginx's and the app's) the way the load tests do. The abuse tests check the defaults
  // on an nginx and app instances of their own (src/sales/sale-abuse.test.ts).
  const raised = { NGINX_SIGNUP_RATE: '100000r/s', NGINX_SIGNUP_BURST: '100000' }
  return stackOptionsFromEnv(
    { ...raised, ...env },
    {
      name: 'test',
      dir: path.join(loadConfig(env).STACK_DIR, 'test'),
      portOffset: Number(env.STACK_TEST_PORT_OFFSET || 100),
      // No Prometheus: tests read the metrics endpoints themselves.
      services: { app: withApp, nginx: withApp, prometheus: false },
      // A short drain: the test run's teardown stops the workers, and nobody is waiting for answers then.
      // The drain stays longer than nginx's upstream keepalive_timeout (1 s), as in production: the
      // reload test (test/cluster.test.ts) depends on it, and on X-Worker to see the spread.
      appEnv: {
        NODE_ENV: 'test',
        LOG_LEVEL: env.LOG_LEVEL || 'warn',
        SHUTDOWN_DRAIN_MS: '1500',
        RATE_LIMIT_SIGNUP_PER_MINUTE: '1000000',
        DEBUG_WORKER_HEADER: '1',
      },
    },
  )
}

/** The secret the stack's workers sign tokens with: JWT_SECRET if given, else `<dir>/jwt-secret`. */
export const stackJwtSecret = (o: StackOptions): string => o.givenJwtSecret ?? stackFolderJwtSecret(o.dir)

function withPort(url: string, port: number): string {
  const parsed = new URL(url)
  parsed.port = String(port)
  return parsed.toString()
}

export function stackUrls(o: StackOptions): StackUrls {
  const defaults = loadConfig({})
  const databaseUrl = o.external.databaseUrl ?? withPort(defaults.DATABASE_URL, o.ports.primary)
  const localReplica = withPort(defaults.DATABASE_REPLICA_URL, o.ports.replica)
  const workerIds = Array.from({ length: o.apiInstances }, (_, n) => n)
  return {
    databaseUrl,
    // Without a replica of its own, an external primary serves the replica's reads too.
    replicaUrl: o.external.replicaUrl ?? (o.external.databaseUrl ? databaseUrl : localReplica),
    redisUrl: o.external.redisUrl ?? withPort(defaults.REDIS_URL, o.ports.redis),
    nginxUrl: `http://127.0.0.1:${o.ports.nginx}`,
    nginxAdminUrl: `http://127.0.0.1:${o.ports.nginxAdmin}`,
    workers: workerIds.map((n) => `http://127.0.0.1:${o.ports.api + n}`),
    metrics: workerIds.map((n) => `http://127.0.0.1:${o.ports.metrics + n}/metrics`),
  }
}

async function postgresSetup(o: StackOptions, create: boolean): Promise<PostgresSetup | undefined> {
  const paths = stackPaths(o.dir)
  const root = create ? (await createPostgresRoot(paths)).root : existingPostgresRoot(paths)
  const binDir = await postgresBinDir()
  if (!root || !binDir) return undefined
  const app = new URL(loadConfig({}).DATABASE_URL)
  return {
    paths: postgresPaths(root),
    binDir,
    stackName: o.name,
    primaryPort: o.ports.primary,
    replicaPort: o.ports.replica,
    app: { user: app.username, password: app.password, database: app.pathname.slice(1) },
    durable: o.durablePostgres,
  }
}

const redisSetup = (o: StackOptions): RedisSetup => ({ dir: stackPaths(o.dir).redisDir, port: o.ports.redis })

function appSetup(o: StackOptions, urls: StackUrls): AppSetup {
  const paths = stackPaths(o.dir)
  return {
    pm2Home: paths.pm2Home,
    logsDir: paths.logsDir,
    ecosystem: o.ecosystem,
    instances: o.apiInstances,
    apiPort: o.ports.api,
    env: {
      ...o.appEnv,
      HOST: '127.0.0.1',
      PORT: String(o.ports.api),
      METRICS_PORT: String(o.ports.metrics),
      JOBS_METRICS_PORT: String(o.ports.jobsMetrics),
      API_INSTANCES: String(o.apiInstances),
      DATABASE_URL: urls.databaseUrl,
      DATABASE_REPLICA_URL: urls.replicaUrl,
      REDIS_URL: urls.redisUrl,
      STACK_DIR: o.dir,
      JWT_SECRET: stackJwtSecret(o),
    },
  }
}

function nginxSetup(o: StackOptions, urls: StackUrls): NginxSetup {
  return {
    stackDir: o.dir,
    port: o.ports.nginx,
    adminPort: o.ports.nginxAdmin,
    upstreams: urls.workers.map((url) => new URL(url).host),
    jobsMetrics: `127.0.0.1:${o.ports.jobsMetrics}`,
    limits: o.nginxLimits,
  }
}

const prometheusSetup = (o: StackOptions): PrometheusSetup => ({
  dir: path.join(o.dir, 'prometheus'),
  port: o.ports.prometheus,
  apiTargets: stackUrls(o).metrics.map((url) => new URL(url).host),
  jobsTarget: `127.0.0.1:${o.ports.jobsMetrics}`,
})

const defaultLog = (o: StackOptions): Log => {
  const started = Date.now()
  return (message) =>
    console.log(`[stack:${o.name} +${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`)
}

/**
 * Brings the stack up, starting only what is not running, so a second call is fast. Order: servers and
 * the build in parallel; migrations and seed on the primary; the workers; nginx once every worker is live.
 */
export async function stackUp(o: StackOptions, log: Log = defaultLog(o)): Promise<StackUrls> {
  const urls = stackUrls(o)
  const needed: SystemServer[] = []
  if (o.services.postgres || o.services.replica) needed.push('postgres')
  if (o.services.redis) needed.push('redis')
  if (o.services.nginx) needed.push('nginx')
  await ensureSystemPackages(needed, log)
  mkdirSync(o.dir, { recursive: true })

  const database = async () => {
    const pgSetup = o.services.postgres || o.services.replica ? await postgresSetup(o, true) : undefined
    if (pgSetup && o.services.postgres) await ensurePrimary(pgSetup, log)
    if (pgSetup && o.services.replica) await ensureReplica(pgSetup, log)
    // An external primary is migrated and seeded too; a disabled local one is not there to migrate.
    if (o.services.postgres || o.external.databaseUrl) await migrateAndSeed(o, urls, log)
    if (pgSetup && o.services.replica) await ensureStreamingReplica(pgSetup, log)
  }
  const redis = async () => {
    if (o.services.redis) await ensureRedis(redisSetup(o), log)
  }
  const build = async () => {
    if (o.services.app) await buildApp(stackPaths(o.dir).buildStamp, log)
  }
  const results = await Promise.allSettled([database(), redis(), build()])
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed) throw failed.reason

  if (o.services.app) await ensureApp(appSetup(o, urls), log)
  if (o.services.nginx) await ensureNginx(nginxSetup(o, urls), log)
  if (o.services.prometheus) await ensurePrometheus(prometheusSetup(o), log)
  log(`up: ${urls.nginxUrl}`)
  return urls
}

async function migrateAndSeed(o: StackOptions, urls: StackUrls, log: Log): Promise<void> {
  const pool = new pg.Pool({ connectionString: urls.databaseUrl, max: 2 })
  try {
    const { applied } = await migrate(pool)
    log(`database: ${applied.length} migration(s) applied`)
    const config = loadConfig({ ...process.env, ...appSetup(o, urls).env })
    await seed(pool, config)
  } finally {
    await pool.end()
  }
}

/**
 * Stops everything this stack's folder records as running (pid files), whatever the options say is
 * enabled now, in reverse order of start. External servers are never touched.
 */
export async function stackDown(o: StackOptions, log: Log = defaultLog(o)): Promise<void> {
  const urls = stackUrls(o)
  await stopPrometheus(prometheusSetup(o), log)
  await stopNginx(nginxSetup(o, urls), log)
  await stopApp(appSetup(o, urls), log)
  const pgSetup = await postgresSetup(o, false)
  if (pgSetup) {
    await stopCluster(pgSetup, 'replica', log)
    await stopCluster(pgSetup, 'primary', log)
  }
  await stopRedis(redisSetup(o), log)
}

/**
 * Stops the stack, then deletes its data (the postgres area too, when it lives in /var/tmp). Only this
 * stack's own entries go: the test stack's folder inside the dev stack's is left alone.
 */
export async function stackPurge(o: StackOptions, log: Log = defaultLog(o)): Promise<void> {
  await stackDown(o, log)
  const paths = stackPaths(o.dir)
  const pgRoot = existingPostgresRoot(paths)
  if (pgRoot) rmSync(pgRoot, { recursive: true, force: true })
  const { postgresLink, redisDir, pm2Home, nginxDir, logsDir, buildStamp } = paths
  const prometheusDir = prometheusSetup(o).dir
  for (const entry of [postgresLink, redisDir, pm2Home, nginxDir, prometheusDir, logsDir, buildStamp]) {
    rmSync(entry, { recursive: true, force: true })
  }
  log(`purged ${o.dir}`)
}

/** Stops one server, for tests of what happens when a dependency goes away. */
export async function stopService(o: StackOptions, service: ServiceName, log: Log = () => {}): Promise<void> {
  assertLocal(o, service)
  if (service === 'redis') return stopRedis(redisSetup(o), log)
  const pgSetup = await postgresSetup(o, false)
  if (pgSetup) await stopCluster(pgSetup, service, log)
}

/** Starts one server again after stopService; the replica catches up from its slot. */
export async function startService(
  o: StackOptions,
  service: ServiceName,
  log: Log = () => {},
): Promise<void> {
  assertLocal(o, service)
  if (service === 'redis') return ensureRedis(redisSetup(o), log)
  const pgSetup = await postgresSetup(o, true)
  if (!pgSetup) throw new Error('postgres is not installed')
  if (service === 'primary') return ensurePrimary(pgSetup, log)
  await ensureReplica(pgSetup, log)
  await waitForStreaming(pgSetup)
}

/**
 * The stack's own processes and a few levers on them, for the fault campaign (loadtest/faults/): each
 * server's PID (to kill, pause or resume it), PM2, nginx's reload, a crash-like Postgres stop, and a
 * superuser session. Only processes this stack's folder records are ever named.
 */
export async function stackHandles(o: StackOptions) {
  const urls = stackUrls(o)
  const pgSetup = await postgresSetup(o, false)
  const app = appSetup(o, urls)
  const postgres = () => {
    if (!pgSetup || !o.services.postgres) throw new Error(`the ${o.name} stack runs no local Postgres`)
    return pgSetup
  }
  return {
    pid(server: ServiceName | 'nginx'): number | undefined {
      if (server === 'redis') return o.services.redis ? redisPid(redisSetup(o)) : undefined
      if (server === 'nginx') return nginxPid(nginxSetup(o, urls))
      return pgSetup ? postgresPid(pgSetup, server) : undefined
    },
    /** The PM2 processes: `api` workers (by instance) and `jobs`, with their PIDs. */
    async appProcesses(): Promise<{ name: string; pid: number; instance: number }[]> {
      return (await listApp(app)).map((p) => ({
        name: p.name,
        pid: p.pid,
        instance: p.pm2_env.NODE_APP_INSTANCE ?? 0,
      }))
    },
    pm2: (args: string[]) => pm2(app, args),
    /** The settings PM2 gives the app's processes, and where their logs go: for a process started by hand. */
    app: { env: app.env, logsDir: app.logsDir, apiPort: app.apiPort, instances: app.instances },
    reloadNginx: () => reloadNginx(nginxSetup(o, urls)),
    crashPostgres: (role: 'primary' | 'replica') => crashCluster(postgres(), role),
    /** Waits until the replica streams from the primary; fails at once if its log says it never will. */
    replicaStreams: (timeoutMs: number) =>
      waitForStreaming(postgres(), timeoutMs, replicaLogSize(postgres())),
    /** A superuser connection (over the private socket) to one cluster and database. */
    superuser: (role: 'primary' | 'replica', database: string) => superuserClient(postgres(), role, database),
    redisDir: redisSetup(o).dir,
  }
}

export type StackHandles = Awaited<ReturnType<typeof stackHandles>>

function assertLocal(o: StackOptions, service: ServiceName) {
  const enabled = { primary: o.services.postgres, replica: o.services.replica, redis: o.services.redis }[
    service
  ]
  if (!enabled) throw new Error(`${service} is not run by the ${o.name} stack (external server?)`)
}

/** Which of the stack's endpoints answer right now; starts nothing. */
export async function stackStatus(o: StackOptions): Promise<StackStatus> {
  const urls = stackUrls(o)
  const [nginx, nginxAdmin, workers, metrics, primary, replica, redis, prometheus] = await Promise.all([
    httpStatus(`${urls.nginxUrl}/health/live`),
    httpStatus(`${urls.nginxAdminUrl}/health/live`),
    Promise.all(urls.workers.map((url) => httpStatus(`${url}/health/live`))),
    Promise.all(urls.metrics.map((url) => httpStatus(url))),
    postgresAnswers(urls.databaseUrl),
    postgresAnswers(urls.replicaUrl),
    redisPing(Number(new URL(urls.redisUrl).port || 6379), new URL(urls.redisUrl).hostname),
    prometheusStatus(prometheusSetup(o)),
  ])
  return {
    nginx: { url: urls.nginxUrl, up: nginx > 0, adminUrl: urls.nginxAdminUrl, adminUp: nginxAdmin > 0 },
    workers: urls.workers.map((url, n) => ({ url, up: workers[n] === 200 })),
    metrics: urls.metrics.map((url, n) => ({ url, up: metrics[n] === 200 })),
    primary: { url: urls.databaseUrl, up: primary },
    replica: { url: urls.replicaUrl, up: replica },
    redis: { url: urls.redisUrl, up: redis },
    prometheus,
  }
}

async function postgresAnswers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 })
  try {
    await client.connect()
    await client.query('SELECT 1')
    return true
  } catch {
    return false
  } finally {
    await client.end().catch(() => undefined)
  }
}
