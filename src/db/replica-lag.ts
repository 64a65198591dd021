import type pg from 'pg'
import type { Gauge } from 'prom-client'
import type { Log } from '../log.js'

// The read/write split, made lag-aware. Catalog reads call `readPool()`: the replica while it answers
// and replays within REPLICA_MAX_LAG_MS of the primary, the primary otherwise. Nothing that decides
// stock, and nothing a user must see right after writing it (their cart, their orders), reads here:
// those read the primary directly.
//
// How the lag is measured, and why this way. Every probe reads the primary's current WAL position,
// then asks the replica whether it has replayed up to it:
// - `now() - pg_last_xact_replay_timestamp()` alone is wrong when the primary is idle: nothing new
//   commits, so the last replayed commit gets older and the "lag" grows without bound although the
//   replica has everything.
// - Guarding it with `pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()` fixes the idle case, but
//   only compares the replica with itself: a replica that stopped receiving WAL (network, walreceiver
//   down) has replayed all it received and reports 0 while the primary moves on.
// - Comparing the primary's `pg_current_wal_lsn()` with the replica's `pg_last_wal_replay_lsn()` is
//   right in both cases: idle primary, equal positions, lag 0; a cut-off replica falls behind. LSNs
//   are bytes, though, not seconds. So: when the replica has replayed what the primary had at the
//   start of the probe, the lag is 0 (to within one probe). Otherwise it is bounded by the time since
//   we last saw it caught up and by the age of its last replayed commit; we report the smaller bound.

export type ReadSource = 'replica' | 'primary'

export interface ReplicaLagState {
  replicaUp: boolean
  /** Seconds the replica is behind; undefined while it does not answer. */
  lagSeconds: number | undefined
  readsFrom: ReadSource
}

export interface ReplicaLagMonitor {
  /** The pool catalog reads should use right now; never throws. */
  readPool(): pg.Pool
  /** A read on the replica failed because it is away: read from the primary until a probe says otherwise. */
  replicaFailed(): void
  state(): ReplicaLagState
  /** Measures once (the timer calls this every probe interval) and returns the new state. */
  probe(): Promise<ReplicaLagState>
  /** Measures once, then every `intervalMs` until `stop()`. */
  start(): Promise<void>
  stop(): void
}

export interface ReplicaLagOptions {
  /** The pools queries run on. */
  primary: pg.Pool
  replica: pg.Pool
  /** One-connection pools for the probes, so a saturated read pool cannot delay the measurement. */
  probes: { primary: pg.Pool; replica: pg.Pool }
  maxLagMs: number
  intervalMs: number
  gauges: { lagSeconds: Gauge; replicaInUse: Gauge }
  log: Log
}

interface ReplicaPosition {
  in_recovery: boolean
  caught_up: boolean | null
  replayed_all_received: boolean | null
  since_last_replay: number | null
}

function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`lag probe took over ${ms} ms`)), ms)
  })
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer))
}

export function createReplicaLagMonitor(options: ReplicaLagOptions): ReplicaLagMonitor {
  const { primary, replica, probes, maxLagMs, intervalMs, gauges, log } = options
  // A probe that does not answer within this long counts as "replica down": reads move at once.
  const probeDeadlineMs = Math.max(intervalMs, 1000)
  let state: ReplicaLagState = { replicaUp: false, lagSeconds: undefined, readsFrom: 'primary' }
  let lastCaughtUpAt: number | undefined
  let timer: NodeJS.Timeout | undefined
  let stopped = false

  async function primaryLsn(): Promise<string | null> {
    try {
      const { rows } = await withDeadline(
        probes.primary.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn'),
        probeDeadlineMs,
      )
      return rows[0]?.lsn ?? null
    } catch {
      // Without the primary's position we fall back to the replica's own view (see the header).
      return null
    }
  }

  async function measureLagSeconds(): Promise<number> {
    const startedAt = Date.now()
    const lsn = await primaryLsn()
    const { rows } = await withDeadline(
      probes.replica.query<ReplicaPosition>(
        `SELECT pg_is_in_recovery() AS in_recovery,
                pg_last_wal_replay_lsn() >= $1::pg_lsn AS caught_up,
                pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() AS replayed_all_received,
                EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 AS since_last_replay`,
        [lsn],
      ),
      probeDeadlineMs,
    )
    const position = rows[0]
    // Not a standby at all (a stack whose "replica" URL points at the primary): nothing to lag behind.
    if (!position || !position.in_recovery) return 0
    const caughtUp = lsn === null ? position.replayed_all_received : position.caught_up
    if (caughtUp) {
      lastCaughtUpAt = startedAt
      return 0
    }
    const bounds = [position.since_last_replay ?? Infinity]
    if (lastCaughtUpAt !== undefined) bounds.push((Date.now() - lastCaughtUpAt) / 1000)
    return Math.max(0, Math.min(...bounds))
  }

  // Hysteresis: leave the replica above the bound, come back only under half of it, so a lag that
  // hovers around the bound does not flip every read between the pools twice a second.
  function chooseSource(lagSeconds: number | undefined): ReadSource {
    if (lagSeconds === undefined) return 'primary'
    const lagMs = lagSeconds * 1000
    if (state.readsFrom === 'replica') return lagMs <= maxLagMs ? 'replica' : 'primary'
    return lagMs <= maxLagMs / 2 ? 'replica' : 'primary'
  }

  async function probe(): Promise<ReplicaLagState> {
    let next: ReplicaLagState
    try {
      const lagSeconds = await measureLagSeconds()
      next = { replicaUp: true, lagSeconds, readsFrom: chooseSource(lagSeconds) }
    } catch (err) {
      next = { replicaUp: false, lagSeconds: undefined, readsFrom: 'primary' }
      if (state.replicaUp || state.readsFrom === 'replica') log.warn({ err }, 'replica does not answer')
    }
    if (next.readsFrom !== state.readsFrom) {
      const fields = { lagSeconds: next.lagSeconds, maxLagMs, replicaUp: next.replicaUp }
      if (next.readsFrom === 'primary') log.warn(fields, 'catalog reads moved to the primary')
      else log.info(fields, 'catalog reads back on the replica')
    }
    state = next
    gauges.lagSeconds.set(next.lagSeconds ?? NaN)
    gauges.replicaInUse.set(next.readsFrom === 'replica' ? 1 : 0)
    return next
  }

  // Concurrency: each probe is scheduled when the previous one finished, so probes never pile up on a
  // slow server; a probe that misses its deadline counts as "replica down" and reads move at once.
  function schedule() {
    if (stopped) return
    timer = setTimeout(() => {
      void probe().finally(schedule)
    }, intervalMs)
    timer.unref()
  }

  return {
    readPool: () => (state.readsFrom === 'replica' ? replica : primary),
    replicaFailed() {
      if (state.readsFrom === 'primary') return
      log.warn({}, 'a read on the replica failed; catalog reads moved to the primary')
      state = { replicaUp: false, lagSeconds: undefined, readsFrom: 'primary' }
      gauges.replicaInUse.set(0)
    },
    state: () => state,
    probe,
    async start() {
      stopped = false
      await probe()
      schedule()
    },
    stop() {
      stopped = true
      clearTimeout(timer)
    },
  }
}
