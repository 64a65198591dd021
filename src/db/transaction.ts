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
 * Runs one statement in autocommit on a client of its own: the statement is its whole transaction, so
 * its answer is its COMMIT's. Like runTransaction, a statement refused with an ERROR committed nothing,
 * and any other failure once it was sent (the connection broke while it ran) is
 * CommitOutcomeUnknownError: it may have committed.
 */
export async function inAutocommit<T>(
  pool: pg.Pool,
  statement: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const { client, release } = await connectWatched(pool)
  let broken: Error | undefined
  try {
    return await statement(client)
  } catch (err) {
    if (isDefiniteRollback(err)) throw err
    broken = err as Error
    throw new CommitOutcomeUnknownError(broken, backendPidOf(client))
  } finally {
    release(broken)
  }
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
  const { client, lost, release } = await connectWatched(pool)
  let broken: Error | undefined
  let committing = false
  try {
    await client.query('BEGIN')
    const { end, result } = await work(client)
    // A connection that broke before COMMIT took its transaction with it: certainly rolled back.
    const gone = lost()
    if (gone) throw gone
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
    if (committing && !isDefiniteRollback(err))
      throw new CommitOutcomeUnknownError(err as Error, backendPidOf(client))
    throw err
  } finally {
    release(broken)
  }
}

/**
 * A pooled client whose broken connection is heard: pg reports it as an 'error' event on the client,
 * even in the middle of a query, and a pool listens only while the client is idle: unheard, the event
 * would kill the process. `release` gives the client back, destroyed if its connection broke or the
 * caller says it is `broken` (in an unknown state).
 */
/** The server process serving this client (its BackendKeyData), for telling later whether it still runs. */
const backendPidOf = (client: pg.PoolClient): number | undefined =>
  (client as unknown as { processID?: number | null }).processID ?? undefined

async function connectWatched(pool: pg.Pool) {
  const client = await pool.connect()
  let lost: Error | undefined
  const onLost = (err: Error) => {
    lost ??= err
  }
  client.on('error', onLost)
  return {
    client,
    lost: () => lost,
    release(broken: Error | undefined) {
      client.removeListener('error', onLost)
      client.release(lost ?? broken)
    },
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

/**
 * An SQL expression that aborts the statement it is evaluated in, saying `why`: Postgres has no RAISE
 * outside PL/pgSQL, so a failing cast stands in. It casts a sub-select, so the planner cannot fold it
 * into an error before the statement runs; put it in the CASE branch that must not happen.
 */
export const abortStatement = (why: string) => `(SELECT '${ABORT_MARK} ${why}')::int`

/** Whether `err` is abortStatement's, for a `why` that starts with `whyPrefix`; returns the rest of `why`. */
export function statementAbortOf(err: unknown, whyPrefix: string): string | null {
  if (pgErrorCode(err) !== PG.invalidTextRepresentation) return null
  const message = String((err as { message?: unknown }).message)
  const at = message.indexOf(`${ABORT_MARK} ${whyPrefix}`)
  return at < 0
    ? null
    : message
        .slice(at + ABORT_MARK.length + whyPrefix.length + 1)
        .replace(/"$/, '')
        .trim()
}

const ABORT_MARK = 'stampede abort:'

/** Postgres error codes we react to by name rather than by number. */
export const PG = {
  uniqueViolation: '23505',
  foreignKeyViolation: '23503',
  checkViolation: '23514',
  lockNotAvailable: '55P03',
  deadlockDetected: '40P01',
  serializationFailure: '40001',
  invalidTextRepresentation: '22P02',
} as const

export function pgErrorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined
}
