import type { Server } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { deleteIdleGuests } from './auth/users.repository.js'
import type { Config } from './config.js'
import { createDashboardFeed } from './dashboard/dashboard-feed.js'
import { createDashboardStreams } from './dashboard/dashboard-stream.js'
import { readSaleProgress } from './dashboard/sale-progress.js'
import { startLeaderLease, type LeaderLease } from './db/leader-lease.js'
import { createPool } from './db/pool.js'
import { deleteExpiredKeys } from './idempotency/idempotency.repository.js'
import type { Log } from './log.js'
import { fetchWorkerMetrics, mergeWorkerMetrics } from './merged-metrics.js'
import { startMetricsServer } from './metrics-server.js'
import { createMetrics } from './metrics.js'
import { sweepExpiredReservations } from './orders/expiry-sweeper.js'
import { createSimulatedPaymentProvider } from './orders/payment-provider.js'
import { refundUnusableCharges } from './orders/refunds.js'
import { createGateWiring, createWaitingRoomWiring } from './purchase-wiring.js'
import { createSoldOutEdge, EDGE_SALES_MAX, edgeStateHandler } from './purchase/edge/sold-out-edge.js'
import { createReconciler } from './purchase/gate/reconciler.js'
import { createQueueProgress } from './purchase/queue/queue-progress.js'
import { countOrdersOfSales, listOrderKeysOfSale } from './purchase/sale-orders.repository.js'
import { connectWithin, createRedis } from './redis/client.js'
import { publishQueueProgress } from './sales/sale-events.js'
import { listRunningSales } from './sales/sales.repository.js'

// The `jobs` process (one PM2 fork per app host): background work no request waits for. Every job here
// is safe to run in two processes at once, so a second jobs process (or a restart overlap) is harmless;
// still, only the leader (see the lease below) runs the jobs that write. `buildJobs` builds it the way
// `buildApp` builds an API worker, so a test can build one; src/jobs.ts is the process around it.

export interface JobsOptions {
  /** The jobs' logger; pino by default. */
  log?: Log
  /** The metrics server's port: 0 takes a free one (a test beside the stack's own jobs process). */
  metricsPort?: number
}

/** One round of a job: what it did, for the log, or null when there was nothing to report. */
type Job = () => Promise<Record<string, number> | null>

const SWEEP_BATCH = 500
const GUEST_BATCH = 1000
const GUEST_EXPIRY_INTERVAL_MS = 60_000
const DASHBOARD_SALES = 10

/** Builds the jobs process: its connections and its jobs. Nothing runs until `start()`. */
export async function buildJobs(config: Config, options: JobsOptions = {}) {
  const log = options.log ?? pino({ level: config.LOG_LEVEL, base: { process: 'jobs' } })
  // Background jobs decide stock, so they read everything from the primary.
  const primary = createPool(config.DATABASE_URL, 4, config, 'jobs')
  primary.on('error', (err) => log.warn({ err }, 'idle Postgres client failed'))
  const redis = createRedis(config)
  redis.on('error', (err) => log.warn({ err }, 'Redis connection error'))
  if (!(await connectWithin(redis, 2000))) log.warn({}, 'Redis did not answer at start-up; still trying')
  const metrics = createMetrics('jobs')
  metrics.trackPool('primary', primary)
  const { gate, sellsThroughGate, releaseHooks } = createGateWiring({ config, primary, redis, log })
  const hooks = releaseHooks()
  // The reconciler keeps the Redis gate honest. Its sale checks have nothing to do unless sales are sold
  // through the gate; gate releases left pending are applied under every strategy, since orders the gate
  // admitted earlier release to it whatever this process sells with.
  const reconciler = createReconciler({ db: { primary }, gate, metrics })
  const payments = createSimulatedPaymentProvider({
    db: primary,
    latencyMs: config.PAYMENT_LATENCY_MS,
    failureRate: config.PAYMENT_FAILURE_RATE,
  })
  // Waiting rooms (src/purchase/queue/): the next places are admitted here, a few times a second, and every
  // worker streams the progress to the buyers still waiting.
  const { waitingRoom } = createWaitingRoomWiring(config, redis)
  const queueProgress = createQueueProgress({
    intervalMs: config.WAITING_ROOM_ROUND_MS,
    publish: (progress) => publishQueueProgress(redis, progress),
  })
  const stop = new AbortController()
  let lease: LeaderLease | null = null

  /** Whether to keep going through a backlog: not once asked to stop, nor once the lease is lost. */
  const mayGoOn = () => !stop.signal.aborted && (lease?.held() ?? true)

  const jobs: Record<string, { intervalMs: number; job: Job }> = {
    'expiry sweep': {
      intervalMs: config.SWEEP_INTERVAL_MS,
      job: async () => {
        // A full batch means more are due (after a big sale): keep going until the backlog is gone, so
        // no reservation outlives its TTL by more than about one sweep interval (invariant I4).
        let expired = 0
        let batch: number
        do {
          batch = await sweepExpiredReservations(primary, metrics, hooks, SWEEP_BATCH)
          expired += batch
        } while (batch === SWEEP_BATCH && mayGoOn())
        const keys = await deleteExpiredKeys(primary, 5000)
        // Charges of orders that can no longer be paid (a pay that failed after its charge) go back.
        const refunded = await refundUnusableCharges(primary, payments, SWEEP_BATCH)
        return expired > 0 || keys > 0 || refunded > 0
          ? { expired, idempotencyKeysDeleted: keys, refunded }
          : null
      },
    },
    'guest expiry': {
      intervalMs: GUEST_EXPIRY_INTERVAL_MS,
      job: async () => {
        // Bounded batches, so a backlog of a million guests never holds one long transaction.
        let deleted = 0
        let batch: number
        do {
          batch = await deleteIdleGuests(primary, config.GUEST_TTL_HOURS, GUEST_BATCH)
          deleted += batch
        } while (batch === GUEST_BATCH && mayGoOn())
        return deleted > 0 ? { guestsDeleted: deleted } : null
      },
    },
    'waiting rooms': {
      intervalMs: config.WAITING_ROOM_ROUND_MS,
      job: async () => {
        const queued = (await listRunningSales(primary, EDGE_SALES_MAX)).filter((sale) => sale.queue)
        let admitted = 0
        let lapsed = 0
        for (const sale of queued) {
          // Units left as the purchase path counts them: the gate's count, or Postgres' row (also when the gate
          // is missing, after Redis lost it and before a purchase rebuilds it).
          const unitsLeft = sellsThroughGate
            ? ((await gate.available(sale.id)) ?? sale.available)
            : sale.available
          const round = await waitingRoom.admit(sale, unitsLeft)
          admitted += round.admittedNow
          lapsed += round.lapsed
          await queueProgress.after(sale.id, round)
        }
        queueProgress.forgetAllBut(queued.map((sale) => sale.id))
        return admitted > 0 || lapsed > 0 ? { admitted, lapsed } : null
      },
    },
    reconcile: {
      intervalMs: config.RECONCILE_INTERVAL_MS,
      job: async () => {
        const pendingReleases = await reconciler.applyPendingReleases()
        const results = sellsThroughGate ? await reconciler.reconcileAll() : []
        const released = results.reduce((sum, r) => sum + r.released, 0)
        const rebuilt = results.filter((r) => r.rebuilt).length
        return released > 0 || rebuilt > 0 || pendingReleases > 0
          ? { released, rebuilt, pendingReleases }
          : null
      },
    },
  }

  /** Runs `job` every `intervalMs` while this process holds the lease, until stop(); a failed round is logged and retried. */
  async function every(name: string, intervalMs: number, job: Job) {
    while (!stop.signal.aborted) {
      try {
        const done = lease?.held() ? await job() : null
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
    readSales: () => readSaleProgress(primary, sellsThroughGate ? gate : null, DASHBOARD_SALES),
    intervalMs: 1000,
    historyLength: 300,
    onError: (err) => log.warn({ err }, 'dashboard feed'),
  })
  const dashboardStreams = createDashboardStreams(dashboard, config.SSE_MAX_STREAMS_PER_WORKER)
  // Sold out at the edge (src/purchase/edge/): nginx fetches which running sales are sold out, and the keys
  // of their orders, a few times a second, and answers those sales' purchase attempts itself.
  const soldOutEdge = createSoldOutEdge({
    primary,
    runningSales: (limit) => listRunningSales(primary, limit),
    gateSnapshot: sellsThroughGate ? (saleId) => gate.snapshot(saleId) : null,
    countOrders: countOrdersOfSales,
    listRetries: listOrderKeysOfSale,
    minIntervalMs: 200,
  })
  let metricsServer: Server | null = null
  let loops: Promise<unknown> = Promise.resolve()

  return {
    log,

    /**
     * Serves the metrics and the dashboard stream, takes part in the leader election, and starts every
     * job's loop; resolves once the metrics server listens.
     */
    async start(): Promise<void> {
      // Concurrency: a leader lease (a Postgres advisory lock on a session of its own) lets one jobs
      // process run the sweeps and the reconciler; the others wait to take over. It is not what keeps them
      // correct: every write they make is a conditional UPDATE (or SKIP LOCKED) on Postgres, the
      // authority, so two leaders during a takeover (the old one not yet aware that its session died) do
      // the same work twice at worst, and nothing needs a fencing token. Without the lease, N hosts run N
      // copies of every scan each round, queue on the same rows, and the reconciler's Redis repairs run N
      // times.
      lease = startLeaderLease({
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
      dashboard.start()
      metricsServer = await startMetricsServer(
        metrics.registry,
        config.HOST,
        options.metricsPort ?? config.JOBS_METRICS_PORT,
        {
          '/metrics/merged': async () => {
            const { text, sources } = await mergeWorkerMetrics(metrics.registry, workerMetricsUrls)
            return {
              type: 'text/plain; version=0.0.4',
              body: `# merged from jobs and ${sources.length} worker(s)\n${text}`,
            }
          },
        },
        {
          '/dashboard/stream': dashboardStreams.handle,
          '/edge/sold-out': edgeStateHandler(soldOutEdge, (err) => log.warn({ err }, 'edge state')),
        },
      )
      loops = Promise.all(
        Object.entries(jobs).map(([name, { intervalMs, job }]) => every(name, intervalMs, job)),
      )
      log.info(
        { sweepMs: config.SWEEP_INTERVAL_MS, reconcileMs: config.RECONCILE_INTERVAL_MS },
        'jobs started',
      )
    },

    /** One round of every job now, as the leader runs it, whoever holds the lease (for tests). */
    async tick(): Promise<Record<string, Record<string, number> | null>> {
      const done: Record<string, Record<string, number> | null> = {}
      for (const [name, { job }] of Object.entries(jobs)) done[name] = await job()
      return done
    },

    /** Ends the loops (a round under way finishes), then the streams, the servers and the connections. */
    async stop(): Promise<void> {
      stop.abort()
      dashboard.stop()
      dashboardStreams.close()
      await loops
      // Scrapes still open are cut: nothing waits for a stopping process's numbers.
      metricsServer?.close()
      metricsServer?.closeAllConnections()
      await lease?.close()
      await primary.end()
      redis.disconnect()
      log.info({}, 'jobs stopped')
    },
  }
}

export type Jobs = Awaited<ReturnType<typeof buildJobs>>
