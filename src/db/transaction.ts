import type pg from 'pg'

/** Anything a repository function can run a query on: a pool (primary or replica) or a transaction. */
export type Queryable = pg.Pool | pg.PoolClient

/**
 * Runs `work` in one transaction on one client: COMMIT when it resolves, ROLLBACK when it throws,
 * and the client always goes back to the pool.
 */
export async function withTransaction<T>(pool: pg.Pool, work: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect()
  let broken: Error | undefined
  try {
    await client.query('BEGIN')
    const result = await work(client)
    await client.query('COMMIT')
    return result
  } catch (err) {
    // A client whose ROLLBACK fails is in an unknown state: destroy it instead of pooling it again.
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
