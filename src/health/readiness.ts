import type { FastifyInstance } from 'fastify'
import { ping } from '../db/pool.js'
import type { ReadSource } from '../db/replica-lag.js'

export type CheckState = 'up' | 'down'

export interface ReadinessReport {
  checks: Record<string, CheckState>
  /** Names of the parts that are down, e.g. ['replica', 'redis']; `draining` while the worker stops. */
  failing: string[]
  /**
   * Where catalog reads go right now, and why they moved: `replica` (down; also in `failing`) or
   * `replica_lag` (answers, but lags over REPLICA_MAX_LAG_MS; the worker stays ready).
   */
  readsFrom: ReadSource
  degraded: string[]
}

const CHECK_TIMEOUT_MS = 1000

async function probe(check: () => Promise<unknown>): Promise<CheckState> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), CHECK_TIMEOUT_MS)
  })
  try {
    await Promise.race([check(), timeout])
    return 'up'
  } catch {
    return 'down'
  } finally {
    clearTimeout(timer)
  }
}

/** Asks every dependency at once; a dependency that does not answer within a second counts as down. */
export async function checkReadiness(app: FastifyInstance): Promise<ReadinessReport> {
  const [primary, replica, redis] = await Promise.all([
    probe(() => ping(app.db.primary)),
    probe(() => ping(app.db.replica)),
    probe(() => app.redis.ping()),
  ])
  const checks: Record<string, CheckState> = { primary, replica, redis }
  const failing = Object.keys(checks).filter((name) => checks[name] === 'down')
  if (app.draining) failing.push('draining')
  const lag = app.replicaLag.state()
  const degraded: string[] = []
  if (replica === 'down' || !lag.replicaUp) degraded.push('replica')
  else if (lag.readsFrom === 'primary') degraded.push('replica_lag')
  return { checks, failing, readsFrom: lag.readsFrom, degraded }
}
