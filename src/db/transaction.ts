import pg from 'pg'
import { CommitOutcomeUnknownError } from '../errors.js'

/** Anything a repository function can run a query on: a pool (primary or replica) or a transaction. */
export type Queryable = pg.Pool | pg.PoolClient

/**
 * Runs `work` in one transaction on one client: COMMIT when it resolves, ROLLBACK when it throws,
 * and the client always goes back to the pool. Throws CommitOutcomeUnknownError when the connection
 * broke while COMMIT was on its way, so nobody can say whether the transaction committed.
 */
export function withTransaction<T>(pool: pg.Pool, work: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
  return runTransaction(pool, async (tx) => ({ end: 'COMMIT', result: await work(tx) })).then(
    (ended) => ended.result,
  )
}

/**
 * Like withTransaction, but `work` hands back its transaction's last statement instead of running it,
 * and that statement goes to Postgres together with COMMIT, in one round trip: whatever it locks is
 * held only while the server runs it and commits, never while this process is busy elsewhere.
 * `last` null sends COMMIT alone. `last` is plain SQL without parameters (several statements in one round trip are only possible in
 * Postgres' simple protocol, which has none): callers write only checked integers into it.
 */
export function withTransactionEndingIn<T>(
  pool: pg.Pool,
  work: (tx: pg.PoolClient) => Promise<{ last: string | null; result: T }>,
): Promise<T> {
  return withTransactionEndingInReturning(pool, work).then((ended) => ended.result)
}

/**
 * withTransactionEndingIn that also hands back the rows `last` returned (its statements' RETURNING,
 * one list for all of them), read from the answer of that same round trip.
 */
export function withTransactionEndingInReturning<T, R = Record<string, unknown>>(
  pool: pg.Pool,
  work: (tx: pg.PoolClient) => Promise<{ last: string | null; result: T }>,
): Promise<{ result: T; rows: R[] }> {
  return runTransaction(pool, async (tx) => {
    const { last, result } = await work(tx)
    return { end: last === null ? 'COMMIT' : `${last}; COMMIT`, result }
  }).then(({ result, rows }) => ({ result, rows: rows as R[] }))
}

/**
 * Runs `work` in a transaction that is always rolled back: a probe that may wait for other
 * transactions' locks but changes nothing.
 */
export function withRollback<T>(pool: pg.Pool, work: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
  return runTransaction(pool, async (tx) => ({ end: 'ROLLBACK', result: await work(tx) })).then(
    (ended) => ended.result,
  )
}

/** Runs the transaction; returns `work`'s result and the rows its ending statements returned. */
async function runTransaction<T>(
  pool: pg.Pool,
  work: (tx: pg.PoolClient) => Promise<{ end: string; result: T }>,
): Promise<{ result: T; rows: unknown[] }> {
  const client = await pool.connect()
  // pg reports a broken connection as an 'error' event on the client, even in the middle of a query,
  // and a pool listens only while the client is idle: unheard, the event would kill the process.
  let lost: Error | undefined
  const onLost = (err: Error) => {
    lost ??= err
  }
  client.on('error', onLost)
  let broken: Error | undefined
  let committing = false
  try {
    await client.query('BEGIN')
    const { end, result } = await work(client)
    // A connection that broke before COMMIT took its transaction with it: certainly rolled back.
    if (lost) throw lost
    committing = end !== 'ROLLBACK'
    // Several statements in one simple query answer with one result each.
    const ended = (await client.query(end)) as pg.QueryResult | pg.QueryResult[]
    return { result, rows: [ended].flat().flatMap((r) => r.rows as unknown[]) }
  } catch (err) {
    // A client whose ROLLBACK fails is in an unknown state: destroy it instead of pooling it again.
    // (After a failed COMMIT there is no transaction left, which Postgres only warns about.)
    await client.query('ROLLBACK').catch((rollbackError: Error) => {
      broken = rollbackError
    })
    if (committing && !isDefiniteRollback(err)) throw new CommitOutcomeUnknownError(err as Error)
    throw err
  } finally {
    client.removeListener('error', onLost)
    client.release(lost ?? broken)
  }
}

/**
 * Whether a failed COMMIT (or `last; COMMIT`) certainly committed nothing. Only an error response of
 * severity ERROR says so: the session lives on and its transaction was aborted (a serialization
 * failure, a deferred constraint, `last` refused). Everything else leaves the outcome unknown: the
 * connection ended or was reset before the answer arrived (the server may have committed and then
 * died, or may still be committing), a client-side timeout, or a FATAL or PANIC response, which ends
 * the session and can come after the commit record was written (a backend terminated while it waits
 * for a synchronous standby). A server that localises severities makes every error "unknown": the safe
 * side.
 */
function isDefiniteRollback(err: unknown): boolean {
  return err instanceof pg.DatabaseError && err.severity === 'ERROR'
}

/** Postgres error codes we react to by name rather than by number. */
export const PG = {
  uniqueViolation: '23505',
  foreignKeyViolation: '23503',
  checkViolation: '23514',
  lockNotAvailable: '55P03',
  deadlockDetected: '40P01',
  serializationFailure: '40001',
} as const

export function pgErrorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined
}
