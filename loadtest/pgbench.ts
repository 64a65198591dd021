import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type pg from 'pg'
import { run } from '../scripts/stack/process.js'
import { postgresBinDir } from '../scripts/stack/system-packages.js'

// The yardstick for durable flash-sale writes: how many single-row conditional UPDATEs per second the same
// Postgres commits when every client hits one row, the way a naive flash sale decrements its stock. The
// table lives in a schema of its own and is dropped afterwards.

export interface PgbenchResult {
  clients: number
  seconds: number
  tps: number
  transactions: number
}

const SCHEMA = 'stampede_pgbench'

export async function pgbenchSingleRowUpdate(
  db: pg.Pool,
  databaseUrl: string,
  wantedClients: number,
  seconds: number,
): Promise<PgbenchResult> {
  const binDir = await postgresBinDir()
  if (!binDir) throw new Error('pgbench not found: install postgresql-15 (its client binaries)')
  // Leave room under max_connections for the app's pools, which stay connected during the run.
  const { rows } = await db.query<{ max: number; used: number }>(
    `SELECT current_setting('max_connections')::int AS max, (SELECT count(*) FROM pg_stat_activity)::int AS used`,
  )
  const clients = Math.max(1, Math.min(wantedClients, rows[0]!.max - rows[0]!.used - 10))
  await db.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
  await db.query(`CREATE SCHEMA ${SCHEMA}`)
  await db.query(
    `CREATE TABLE ${SCHEMA}.bench_stock (id int PRIMARY KEY, available int NOT NULL CHECK (available >= 0))`,
  )
  await db.query(`INSERT INTO ${SCHEMA}.bench_stock VALUES (1, 1000000000)`)
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stampede-pgbench-'))
  try {
    const script = path.join(dir, 'single-row-update.sql')
    writeFileSync(
      script,
      `UPDATE ${SCHEMA}.bench_stock SET available = available - 1 WHERE id = 1 AND available >= 1;\n`,
    )
    const url = new URL(databaseUrl)
    const { stdout } = await run(
      path.join(binDir, 'pgbench'),
      [
        '-n',
        '-c',
        String(clients),
        '-j',
        '2',
        '-T',
        String(seconds),
        '-f',
        script,
        '-h',
        url.hostname,
        '-p',
        url.port || '5432',
        '-U',
        decodeURIComponent(url.username),
        url.pathname.slice(1),
      ],
      { env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) } },
    )
    const tps = Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? NaN)
    const transactions = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? NaN)
    return { clients, seconds, tps, transactions }
  } finally {
    rmSync(dir, { recursive: true, force: true })
    await db.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
  }
}
