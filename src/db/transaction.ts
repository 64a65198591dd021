import type pg from 'pg'

/** Anything a repository function can run a query on: a pool (primary or replica) or a transaction. */
export type Queryable = pg.Pool | pg.PoolClient

/**
 * Runs `work` in one transaction on one client: COMMIT when it resolves, ROLLBACK when it throws,
 * and the client always goes back to the pool.
 */
export function withTransaction<T>(pool: pg.Pool, work: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
  return runTransaction(pool, async (tx) => ({ commit: 'COMMIT', result: await work(tx) }))
}

/**
 * Like withTransaction, but `work` hands back its transaction's last statement instead of running it,
 * and that statement goes to Postgres together with COMMIT, in one round trip: whatever it locks is
 * held only while the server runs it and commits, never while this process is busy elsewhere.
 * `last` is plain SQL without parameters (several statements in one round trip are only possible in
 * Postgres' simple protocol, which has none): callers write only checked integers into it.
 */
export function withTransactionEndingIn<T>(
  pool: pg.Pool,
  work: (tx: pg.PoolClient) => Promise<{ last: string; result: T }>,
): Promise<T> {
  return runTransaction(pool, async (tx) => {
    const { last, result } = await work(tx)
    return { commit: `${last}; COMMIT`, result }
  })
}

async function runTransaction<T>(
  pool: pg.Pool,
  work: (tx: pg.PoolClient) => Promise<{ commit: string; result: T }>,
): Promise<T> {
  const client = await pool.connect()
  let broken: Error | undefined
  try {
    await client.query('BEGIN')
    const { commit, result } = await work(client)
    await client.query(commit)
    return result
  } catch (err) {
    // A client whose ROLLBACK fails is in an unknown state: destroy it instead of pooling it again.
    // (After a failed COMMIT there is no transaction left, which Postgres only warns about.)
    await client.query('ROLLBACK').catch((rollbackError: Error) => {
      broken = rollbackError
    })
    throw err
  } finally {
    client.release(broken)
  }
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
