import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'

// Any fixed number works, as long as every jobs process of one database uses the same one (and it is not
// the migrations' 5_310_001). Below 2^31, so pg_locks shows it as classid 0, objid <key>.
export const JOBS_LEADER_LOCK_KEY = 5_310_002

/**
 * Takes the leader lock on this session unless the server is a standby (Patroni's old leader while it
 * is being demoted, a misrouted connection): a lock there would exclude nobody on the real primary.
 * CASE evaluates in order, so a standby is never asked for the lock at all.
 */
async function tryTakeLeaderLock(client: pg.Client, key: number): Promise<boolean> {
  const { rows } = await client.query<{ taken: boolean }>(
    `SELECT CASE WHEN pg_is_in_recovery() THEN false ELSE pg_try_advisory_lock($1) END AS taken`,
    [key],
  )
  return rows[0]!.taken
}

/** True while this session is alive, on a primary, and still holds the leader lock. */
async function stillHoldsLeaderLock(client: pg.Client, key: number): Promise<boolean> {
  const { rows } = await client.query<{ holds: boolean }>(
    `SELECT NOT pg_is_in_recovery() AND EXISTS (
       SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
          AND classid = 0 AND objid = $1 AND objsubid = 1) AS holds`,
    [key],
  )
  return rows[0]!.holds
}

export interface LeaderLease {
  /** True only while this process's lock was confirmed within the last round. */
  held(): boolean
  /** Stops the rounds and ends the session, which releases the lock for another process. */
  close(): Promise<void>
}

/**
 * A leader lease: a session-level advisory lock held on a connection of its own (not a pool client, whose
 * session other queries would share and a pool might close). Every `roundMs` the holder checks that its
 * session still holds the lock and a non-holder tries to take it. A check that fails (an error, or no
 * answer within `checkTimeoutMs`) drops the lease at once and closes the client; the next round connects
 * again. A Postgres failover ends every session on the old primary, its locks with them, and the first
 * jobs process to reach the new one leads.
 */
export function startLeaderLease(options: {
  connectionString: string
  roundMs: number
  /** How long one check may take before the connection counts as lost. */
  checkTimeoutMs: number
  applicationName: string
  key?: number
  onChange?: (held: boolean) => void
  onError?: (err: unknown) => void
}): LeaderLease {
  const key = options.key ?? JOBS_LEADER_LOCK_KEY
  const stop = new AbortController()
  let client: pg.Client | null = null
  let holding = false
  let confirmedAt = 0

  const setHolding = (now: boolean) => {
    if (now !== holding) options.onChange?.(now)
    holding = now
  }
  const drop = async () => {
    setHolding(false)
    const lost = client
    client = null
    // Ending the session releases the lock if the server still counts it as ours.
    await lost?.end().catch(() => undefined)
  }

  async function round() {
    try {
      if (!client) {
        const fresh = new pg.Client({
          connectionString: options.connectionString,
          connectionTimeoutMillis: options.checkTimeoutMs,
          query_timeout: options.checkTimeoutMs,
          keepAlive: true,
          application_name: options.applicationName,
        })
        // A connection error outside a query (the server went away between rounds) would otherwise be
        // an unhandled 'error' event; the next round's query fails and drops the lease.
        fresh.on('error', () => undefined)
        client = fresh
        await fresh.connect()
      }
      const ok = holding ? await stillHoldsLeaderLock(client, key) : await tryTakeLeaderLock(client, key)
      if (stop.signal.aborted) return
      if (ok) confirmedAt = Date.now()
      // A holder that finds its lock gone (it should not happen while the session lives) starts over.
      if (holding && !ok) void drop()
      else setHolding(ok)
    } catch (err) {
      if (stop.signal.aborted) return
      options.onError?.(err)
      void drop()
    }
  }

  const loop = (async () => {
    while (!stop.signal.aborted) {
      await round()
      await sleep(options.roundMs, undefined, { signal: stop.signal }).catch(() => undefined)
    }
  })()

  return {
    // A check that hangs (a silent network) fails after checkTimeoutMs; until then the lease lasts one
    // round past its last confirmation, not longer.
    held: () => holding && Date.now() - confirmedAt <= options.roundMs + options.checkTimeoutMs,
    async close() {
      stop.abort()
      await loop
      await drop()
    },
  }
}
