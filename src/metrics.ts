import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

/** Something that reports its connection counts, like a pg.Pool. */
interface PoolStats {
  totalCount: number
  idleCount: number
  waitingCount: number
}

// Every metric the app exports is declared here, once, so `grep metrics.` finds every use and the
// dashboards and alert rules can be checked against this list (test/monitoring.test.ts does).
// `worker` labels every series with the process it comes from: api-0, api-1, ..., jobs.
export function createMetrics(worker = 'api-0') {
  const registry = new Registry()
  registry.setDefaultLabels({ worker })
  collectDefaultMetrics({ register: registry })
  const pools = new Map<string, PoolStats>()
  return {
    registry,
    /** Reports a pool's connections in db_pool_connections, read at every scrape. */
    trackPool(name: string, pool: PoolStats) {
      pools.set(name, pool)
    },
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'Time from request to response, by route template (not the raw URL) and status',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    httpErrors: new Counter({
      name: 'http_errors_total',
      help: 'Error answers (4xx, 5xx) by status and the `code` of their body (SOLD_OUT, RATE_LIMITED, ...)',
      labelNames: ['status_code', 'code'] as const,
      registers: [registry],
    }),
    dbPoolConnections: new Gauge({
      name: 'db_pool_connections',
      help: 'Connections of each Postgres pool: total open, idle, and requests waiting for one',
      labelNames: ['pool', 'state'] as const,
      registers: [registry],
      collect() {
        for (const [pool, stats] of pools) {
          this.set({ pool, state: 'total' }, stats.totalCount)
          this.set({ pool, state: 'idle' }, stats.idleCount)
          this.set({ pool, state: 'waiting' }, stats.waitingCount)
        }
      },
    }),
    redisCommandSeconds: new Histogram({
      name: 'redis_command_duration_seconds',
      help: 'Round trip of Redis commands (scripts by their EVALSHA/EVAL name)',
      labelNames: ['command'] as const,
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1],
      registers: [registry],
    }),
    stockConflicts: new Counter({
      name: 'stock_conflicts_total',
      help: 'Stock writes that lost a race (optimistic version clash, pessimistic lock timeout)',
      labelNames: ['strategy'] as const,
      registers: [registry],
    }),
    stockRetries: new Histogram({
      name: 'stock_retries',
      help: 'Retries one stock decision needed before it won or saw the stock gone',
      labelNames: ['strategy'] as const,
      buckets: [0, 1, 2, 4, 8, 16, 32, 64],
      registers: [registry],
    }),
    ordersTotal: new Counter({
      name: 'orders_total',
      help: 'Orders that reached a status',
      labelNames: ['status'] as const,
      registers: [registry],
    }),
    purchases: new Counter({
      name: 'purchases_total',
      help: 'Flash-sale purchase attempts by outcome',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    orderBatchSize: new Histogram({
      name: 'order_batch_size',
      help: 'Orders written by one batch transaction of the redis-gate strategy',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers: [registry],
    }),
    orderBatches: new Counter({
      name: 'order_batches_total',
      help: "Batch transactions of the redis-gate strategy by outcome (committed; split to isolate a bad row; failed; lapsed: it waited past half its reservations' time; gate_ahead: the gate admitted units Postgres did not have; unknown: the answer to COMMIT was lost)",
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    stockDrift: new Gauge({
      name: 'stock_drift',
      help: 'Redis gate + units in flight - Postgres available, per sale (0 when they agree)',
      labelNames: ['sale'] as const,
      registers: [registry],
    }),
    oversell: new Counter({
      name: 'oversell_total',
      help: 'Times the reconciler found a sale with more units reserved and sold than it had (must stay 0)',
      labelNames: ['sale'] as const,
      registers: [registry],
    }),
    gateTokensReleased: new Counter({
      name: 'gate_tokens_released_total',
      help: 'Reservation tokens the reconciler released to the gate because they never became an order',
      registers: [registry],
    }),
    orderQueueFull: new Counter({
      name: 'order_queue_full_total',
      help: "Purchases refused (503 with Retry-After, no unit taken) because the worker's batch queue held ORDER_QUEUE_MAX admitted buyers",
      registers: [registry],
    }),
    gateRebuilds: new Counter({
      name: 'gate_rebuilds_total',
      help: "Gate rebuilds that locked the sale's stock row, by sale and by what they found under the lock: built (this process built the gate), current (another had built it meanwhile), no_sale",
      labelNames: ['sale', 'outcome'] as const,
      registers: [registry],
    }),
    gateDriftRepairs: new Counter({
      name: 'gate_drift_repairs_total',
      help: 'Current gates the reconciler marked stale (to be rebuilt from Postgres) because they disagreed with Postgres on two rounds in a row with no token in flight',
      registers: [registry],
    }),
    gateUnitsRetaken: new Counter({
      name: 'gate_units_retaken_total',
      help: 'Units gate-confirm took from the gate again: their batch committed after their token was released (past its deadline) or lost (a rebuilt gate)',
      registers: [registry],
    }),
    reservationsExpired: new Counter({
      name: 'reservations_expired_total',
      help: 'Unpaid orders released by the expiry sweeper',
      registers: [registry],
    }),
    cacheRequests: new Counter({
      name: 'cache_requests_total',
      help: 'Cache lookups by layer (l1 memory, l2 Redis, db loader) and what they found',
      // result: hit | miss | negative (a cached "not found") | stale (served while another rebuilds) | error
      labelNames: ['family', 'layer', 'result'] as const,
      registers: [registry],
    }),
    cacheLoadSeconds: new Histogram({
      name: 'cache_load_seconds',
      help: 'Time the loader (the database) took to rebuild one cache entry',
      labelNames: ['family'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
    replicaLagSeconds: new Gauge({
      name: 'db_replica_lag_seconds',
      help: 'How far the replica replays behind the primary; NaN while the replica does not answer',
      // Every worker measures the same replica: the merged view shows the worst, not the sum.
      aggregator: 'max',
      registers: [registry],
    }),
    replicaInUse: new Gauge({
      name: 'db_replica_in_use',
      help: '1 while catalog reads go to the replica, 0 while they fall back to the primary',
      aggregator: 'min',
      registers: [registry],
    }),
    jobsLeader: new Gauge({
      name: 'jobs_leader',
      help: '1 while this jobs process holds the leader lease and runs the sweeps and the reconciler, 0 otherwise',
      registers: [registry],
    }),
    dbQueries: new Counter({
      name: 'db_queries_total',
      help: 'Queries sent to Postgres, by pool (primary or replica); lag probes are not counted',
      labelNames: ['pool'] as const,
      registers: [registry],
    }),
  }
}

export type Metrics = ReturnType<typeof createMetrics>
