import type pg from 'pg'

// Where Postgres spends its time, per statement, from pg_stat_statements (the local stack preloads it).
// The benchmark resets the counters before a run and reads the heaviest statements after it.

export interface StatementStat {
  query: string
  calls: number
  totalMs: number
  meanMs: number
}

/** Resets the counters; false when pg_stat_statements is not available on this server. */
export async function resetStatementStats(db: pg.Pool): Promise<boolean> {
  try {
    await db.query('SELECT pg_stat_statements_reset()')
    return true
  } catch {
    return false
  }
}

/** The statements of the app's database that took the most time since the reset. */
export async function heaviestStatements(db: pg.Pool, limit = 6): Promise<StatementStat[]> {
  const { rows } = await db.query<{ query: string; calls: string; total: number; mean: number }>(
    `SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, calls, total_exec_time AS total, mean_exec_time AS mean
       FROM pg_stat_statements
      WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND query NOT ILIKE '%pg_stat_statements%'
      ORDER BY total_exec_time DESC LIMIT $1`,
    [limit],
  )
  return rows.map((r) => ({ query: r.query, calls: Number(r.calls), totalMs: r.total, meanMs: r.mean }))
}
