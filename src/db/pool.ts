import pg from 'pg'
import type { Config } from '../config.js'
import { isDependencyUnavailable } from '../dependency-errors.js'
import type { Metrics } from '../metrics.js'
import { createReplicaLagMonitor, type ReplicaLagMonitor } from './replica-lag.js'
import type { Log } from '../log.js'

// All database access goes through these pools. `primary` is the authority for stock and orders, and
// serves every read a user must see right after their own write (cart, orders: read-your-writes).
// `readPool()` serves catalog reads that may be slightly stale: the replica while its lag is under
// REPLICA_MAX_LAG_MS, the primary otherwise (src/db/replica-lag.ts).
export interface Db {
  primary: pg.Pool
  replica: pg.Pool
  readPool(): pg.Pool
  /**
   * Runs a catalog read on readPool(); if that was the replica and it turned out to be away (stopped,
   * restarting), the read runs again on the primary, so a replica outage costs a retry, not an error.
   */
  read<T>(query: (pool: pg.Pool) => Promise<T>): Promise<T>
}

// Postgres returns bigint (int8) and numeric as strings by default; our ids and counters fit in a JS
// number, so parse int8 as a number once, here, rather than in every repository.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value))

/** `onQuery` runs once per query sent on any of the pool's connections (db_queries_total). */
export function createPool(
  connectionString: string,
  max: number,
  config: Config,
  role: string,
  onQuery?: () => void,
): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max,
    connectionTimeoutMillis: 2000,
    idleTimeoutMillis: 30_000,
    statement_timeout: config.DB_STATEMENT_TIMEOUT_MS,
    application_name: `stampede-${role}-${config.NODE_APP_INSTANCE}`,
  })
  // The pool listens for errors of idle clients only. A client checked out for a transaction whose
  // server goes away (a crash, a restart) emits 'error' on itself, and with nobody listening that event
  // ends the process: a Postgres restart would take every worker down with it. The query in flight is
  // rejected with the same error anyway, and the transaction destroys the client when it releases it.
  pool.on('connect', (client) => client.on('error', () => undefined))
  if (onQuery) pool.on('connect', (client) => countQueries(client, onQuery))
  return pool
}

// Counting at the connection catches every query: `pool.query` runs on a client too, and so does each
// statement of a transaction. It is wrapped once per new connection, so the cost is one call per query.
function countQueries(client: pg.PoolClient, onQuery: () => void) {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown
  client.query = ((...args: unknown[]) => {
    onQuery()
    return query(...args)
  }) as typeof client.query
}

/** The cheapest question a server can answer: readiness probes ask it. */
export async function ping(pool: pg.Pool): Promise<void> {
  await pool.query('SELECT 1')
}

/**
 * An API worker's pools: primary and replica (counted in db_queries_total and tracked in the pool
 * gauges), and the replica-lag monitor with its own one-connection probe pools, already measured once
 * so that reads start where they should.
 */
export async function openDatabase(config: Config, metrics: Metrics, log: Log) {
  const count = (pool: string) => () => metrics.dbQueries.inc({ pool })
  const primary = createPool(config.DATABASE_URL, config.DB_POOL_MAX, config, 'primary', count('primary'))
  const replica = createPool(
    config.DATABASE_REPLICA_URL,
    config.DB_REPLICA_POOL_MAX,
    config,
    'replica',
    count('replica'),
  )
  const probes = {
    primary: createPool(config.DATABASE_URL, 1, config, 'lag-probe'),
    replica: createPool(config.DATABASE_REPLICA_URL, 1, config, 'lag-probe'),
  }
  const replicaLag: ReplicaLagMonitor = createReplicaLagMonitor({
    primary,
    replica,
    probes,
    maxLagMs: config.REPLICA_MAX_LAG_MS,
    intervalMs: config.REPLICA_LAG_PROBE_MS,
    gauges: { lagSeconds: metrics.replicaLagSeconds, replicaInUse: metrics.replicaInUse },
    log,
  })
  const pools = { primary, replica, 'probe-primary': probes.primary, 'probe-replica': probes.replica }
  // An idle client that loses its server emits 'error' on the pool; unhandled, it would crash the worker.
  for (const [name, pool] of Object.entries(pools)) {
    pool.on('error', (err) => log.warn({ err, pool: name }, 'idle Postgres client failed'))
  }
  await replicaLag.start()
  metrics.trackPool('primary', primary)
  metrics.trackPool('replica', replica)
  const read = async <T>(query: (pool: pg.Pool) => Promise<T>): Promise<T> => {
    const pool = replicaLag.readPool()
    try {
      return await query(pool)
    } catch (err) {
      // The lag probe notices a dead replica within one probe interval; reads in that window would fail.
      if (pool !== replica || !isDependencyUnavailable(err)) throw err
      replicaLag.replicaFailed()
      return query(primary)
    }
  }
  const db: Db = { primary, replica, readPool: replicaLag.readPool, read }
  return {
    db,
    replicaLag,
    async close(): Promise<void> {
      replicaLag.stop()
      await Promise.all(Object.values(pools).map((pool) => pool.end()))
    },
  }
}
