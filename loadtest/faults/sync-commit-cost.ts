import pg from 'pg'

// What Patroni's synchronous mode costs a commit, measured on the HA profile's leader in one session:
// the same one-row INSERT committed with synchronous_commit = on (the commit waits until the synchronous
// standby has the WAL on disk) and = local (it waits for the leader's own disk only), interleaved so
// that both see the same machine. Reported by `npm run faults -- --profile ha` and in docs/scaling.md.

export interface SyncCommitCost {
  commits: number
  /** ms per commit: p50 and p99, waiting for the standby and not. */
  synchronous: { p50: number; p99: number }
  local: { p50: number; p99: number }
}

const quantile = (sorted: number[], q: number) =>
  Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! * 100) / 100

export async function measureSyncCommitCost(databaseUrl: string, commits = 400): Promise<SyncCommitCost> {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    // A real table: a temporary (or unlogged) one writes no WAL, so its commits would wait for nothing.
    await client.query('DROP TABLE IF EXISTS ha_commit_probe')
    await client.query('CREATE TABLE ha_commit_probe (id serial PRIMARY KEY, at timestamptz DEFAULT now())')
    const timings: Record<'on' | 'local', number[]> = { on: [], local: [] }
    for (let i = 0; i < commits; i++) {
      for (const mode of ['on', 'local'] as const) {
        await client.query(`SET synchronous_commit = ${mode}`)
        const started = performance.now()
        await client.query('INSERT INTO ha_commit_probe DEFAULT VALUES')
        timings[mode].push(performance.now() - started)
      }
    }
    const summary = (values: number[]) => {
      const sorted = [...values].sort((a, b) => a - b)
      return { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99) }
    }
    await client.query('DROP TABLE ha_commit_probe')
    return { commits, synchronous: summary(timings.on), local: summary(timings.local) }
  } finally {
    await client.end()
  }
}
