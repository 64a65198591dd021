import type pg from 'pg'

/**
 * How many sessions of this database wait for a lock while running a query that matches `queryLike`
 * (a LIKE pattern), counting only those `blockedBy` blocks when given (other test files share the
 * database). Ask on a connection outside the transaction that holds the lock: inside it,
 * pg_stat_activity is a snapshot that never changes.
 */
export async function blockedSessions(
  db: pg.Pool | pg.PoolClient | pg.Client,
  queryLike: string,
  blockedBy?: number,
): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND query LIKE $1
        AND CASE WHEN $2::int IS NULL THEN cardinality(pg_blocking_pids(pid)) > 0
                 ELSE $2::int = ANY(pg_blocking_pids(pid)) END`,
    [queryLike, blockedBy ?? null],
  )
  return rows[0]!.n
}
