import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { deleteIdleGuests } from './auth/users.repository.js'
import { loadConfigOrExit } from './config.js'
import { createDashboardFeed } from './dashboard/dashboard-feed.js'
import { createDashboardStreams } from './dashboard/dashboard-stream.js'
import { readSaleProgress } from './dashboard/sale-progress.js'
import { createPool } from './db/pool.js'
import { deleteExpiredKeys } from './idempotency/idempotency.repository.js'
import { startLeaderLease } from './db/leader-lease.js'
import { fetchWorkerMetrics, mergeWorkerMetrics } from './merged-metrics.js'
import { startMetricsServer } from './metrics-server.js'
import { createMetrics } from './metrics.js'
import { sweepExpiredReservations } from './orders/expiry-sweeper.js'
import { createReconciler } from './purchase/gate/reconciler.js'
import { createStockGate } from './purchase/gate/stock-gate.js'
import { connectWithin, createRedis } from './redis/client.js'
import { orderReleaseHooks } from './release-hooks.js'

// The `jobs` process (one PM2 fork per app host): background work no request waits for. Every job here
// is safe to run in two processes at once, so a second jobs process (or a restart overlap) is harmless;
// still, only the leader (see the lease below) runs the jobs that write.

const config = loadConfigOrExit()
const log = pino({ level: config.LOG_LEVEL, base: { process: 'jobs' } })
// Background jobs decide stock, so they read everything from the primary.
const primary = createPool(config.DATABASE_URL, 4, config, 'jobs')
primary.on('error', (err) => log.warn({ err }, 'idle Postgres client failed'))
const redis = createRedis(config)
redis.on('error', (err) => log.warn({ err }, 'Redis connection error'))
if (!(await connectWithin(redis, 2000))) log.warn('Redis did not answer at start-up; still trying')
const metrics = createMetrics('jobs')
metrics.trackPool('primary', primary)
const gate = createStockGate(redis, { tokenTtlMs: config.GATE_TOKEN_TTL_MS })
const releaseHooks = orderReleaseHooks({ primary, gate, log })
// The reconciler keeps the Redis gate honest. Its sale checks have nothing to do unless sales are sold
// through the gate; gate releases left pending are applied under every strategy, since orders the gate
// admitted earlier release to it whatever this process sells with.
const reconciler = createReconciler({ db: { primary }, gate, metrics })
const reconcilesSales = config.STOCK_STRATEGY === 'redis-gate'

// Concurrency: a leader lease (a Postgres advisory lock on a session of its own) lets one jobs process
// run the sweeps and the reconciler; the others wait to take over. It is not what keeps them correct:
// every write they make is a conditional UPDATE (or SKIP LOCKED) on Postgres, the authority, so two
// leaders during a takeover (the old one not yet aware that its session died) do the same work twice at
// worst, and nothing needs a fencing token. Without the lease, N hosts run N copies of every scan each
// round, queue on the same rows, and the reconciler's Redis repairs run N times.
const lease = startLeaderLease({
  connectionString: config.DATABASE_URL,
  roundMs: 1000,
  checkTimeoutMs: 1000,
  applicationName: `stampede-jobs-lease-${config.NODE_APP_INSTANCE}`,
  onChange: (held) => {
    metrics.jobsLeader.set(held ? 1 : 0)
    log.info({ held }, held ? 'took the jobs leader lease' : 'lost the jobs leader lease')
  },
  onError: (err) => log.warn({ err }, 'jobs leader lease: connection failed; trying again next round'),
})

/** One round of a job: what it did, for the log, or null when there was nothing to report. */
type Job = () => Promise<Record<string, number> | null>

/** The job, run only while this process holds the leader lease. */
function leaderOnly(job: Job): Job {
  return () => (lease.held() ? job() : Promise.resolve(null))
}

const SWEEP_BATCH = 500
const GUEST_BATCH = 1000
const GUEST_EXPIRY_INTERVAL_MS = 60_000
const DASHBOARD_SALES = 10
const stop = new AbortController()
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => stop.abort())

/** Runs `job` every `intervalMs` until the process is asked to stop; a failed round is logged and retried. */
async function every(name: string, intervalMs: number, job: Job) {
  while (!stop.signal.aborted) {
    try {
      const done = await job()
      if (done) log.info(done, name)
    } catch (err) {
      log.error({ err }, `${name} failed; retrying next round`)
    }
    // An abort ends the wait early; that is how the loop stops, not an error.
    await sleep(intervalMs, undefined, { signal: stop.signal }).catch(() => undefined)
  }
}

// The jobs process's own metrics, and the merged view of the whole cluster for humans and the
// load-test report (nginx's admin server serves it as /metrics).
const metricsHost = config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST
const workerMetricsUrls = Array.from(
  { length: config.API_INSTANCES },
  // The workers of this host listen on HOST, which need not be 127.0.0.1 (an HA host binds its own address).
  (_, n) => `http://${metricsHost}:${config.METRICS_PORT + n}/metrics.json`,
)
// The live dashboard's numbers (public/dashboard.html, docs/monitoring.md): computed here once a second
// for every viewer, since this process already reads every worker's metrics; nginx serves the stream
// as /api/dashboard/stream. Five minutes of history, so a page opened mid-run draws the curve so far.
const dashboard = createDashboardFeed({
  readWorkers: () => fetchWorkerMetrics(workerMetricsUrls),
  readSales: () => readSaleProgress(primary, reconcilesSales ? gate : null, DASHBOARD_SALES),
  intervalMs: 1000,
  historyLength: 300,
  onError: (err) => log.warn({ err }, 'dashboard feed'),
})
const dashboardStreams = createDashboardStreams(dashboard, config.SSE_MAX_STREAMS_PER_WORKER)
dashboard.start()
stop.signal.addEventListener('abort', () => {
  dashboard.stop()
  dashboardStreams.close()
})
const metricsServer = await startMetricsServer(
  metrics.registry,
  config.HOST,
  config.JOBS_METRICS_PORT,
  {
    '/metrics/merged': async () => {
      const { text, sources } = await mergeWorkerMetrics(metrics.registry, workerMetricsUrls)
      return {
        type: 'text/plain; version=0.0.4',
        body: `# merged from jobs and ${sources.length} worker(s)\n${text}`,
      }
    },
  },
  { '/dashboard/stream': dashboardStreams.handle },
)

process.send?.('ready')
log.info({ sweepMs: config.SWEEP_INTERVAL_MS, reconcileMs: config.RECONCILE_INTERVAL_MS }, 'jobs started')
await Promise.all([
  every(
    'expiry sweep',
    config.SWEEP_INTERVAL_MS,
    leaderOnly(async () => {
      // A full batch means more are due (after a big sale): keep going until the backlog is gone, so
      // no reservation outlives its TTL by more than about one sweep interval (invariant I4).
      let expired = 0
      let batch: number
      do {
        batch = await sweepExpiredReservations(primary, metrics, releaseHooks, SWEEP_BATCH)
        expired += batch
      } while (batch === SWEEP_BATCH && !stop.signal.aborted && lease.held())
      const keys = await deleteExpiredKeys(primary, 5000)
      return expired > 0 || keys > 0 ? { expired, idempotencyKeysDeleted: keys } : null
    }),
  ),
  every(
    'guest expiry',
    GUEST_EXPIRY_INTERVAL_MS,
    leaderOnly(async () => {
      // Bounded batches, so a backlog of a million guests never holds one long transaction.
      let deleted = 0
      let batch: number
      do {
        batch = await deleteIdleGuests(primary, config.GUEST_TTL_HOURS, GUEST_BATCH)
        deleted += batch
      } while (batch === GUEST_BATCH && !stop.signal.aborted && lease.held())
      return deleted > 0 ? { guestsDeleted: deleted } : null
    }),
  ),
  every(
    'reconcile',
    config.RECONCILE_INTERVAL_MS,
    leaderOnly(async () => {
      const pendingReleases = await reconciler.applyPendingReleases()
      const results = reconcilesSales ? await reconciler.reconcileAll() : []
      const released = results.reduce((sum, r) => sum + r.released, 0)
      const rebuilt = results.filter((r) => r.rebuilt).length
      return released > 0 || rebuilt > 0 || pendingReleases > 0
        ? { released, rebuilt, pendingReleases }
        : null
    }),
  ),
])
metricsServer.close()
await lease.close()
await primary.end()
redis.disconnect()
log.info('jobs stopped')
