import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type pg from 'pg'

// Any fixed number works, as long as every process that migrates this database uses the same one.
const MIGRATION_LOCK_KEY = 5_310_001

export interface MigrateOptions {
  dir?: string
  log?: (message: string) => void
}

/**
 * Applies the numbered SQL files in `dir` (default: migrations/) that schema_migrations does not list yet,
 * in name order, each in its own transaction. Safe to call from several processes at once.
 */
export async function migrate(pool: pg.Pool, opts: MigrateOptions = {}): Promise<{ applied: string[] }> {
  const dir = opts.dir ?? defaultMigrationsDir()
  const log = opts.log ?? (() => {})
  const files = (await readdir(dir)).filter((name) => /^\d+_.+\.sql$/.test(name)).sort()
  const applied: string[] = []
  const client = await pool.connect()
  try {
    // Concurrency: a session-level advisory lock, held on this one client, lets one migrator run at a time.
    // Without it, two processes starting together (PM2 workers, a deploy and a test run) both see a file as
    // pending and both run it: one dies half-way on "relation already exists", or a data migration runs twice.
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY])
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
    const { rows } = await client.query<{ name: string; checksum: string }>(
      'SELECT name, checksum FROM schema_migrations',
    )
    const done = new Map(rows.map((row) => [row.name, row.checksum]))
    for (const name of files) {
      const sql = await readFile(path.join(dir, name), 'utf8')
      const checksum = createHash('sha256').update(sql).digest('hex')
      const appliedChecksum = done.get(name)
      if (appliedChecksum !== undefined) {
        if (appliedChecksum !== checksum) {
          throw new Error(`Migration ${name} changed after it was applied; add a new migration instead`)
        }
        continue
      }
      try {
        await client.query('BEGIN')
        await client.query(sql)
        await client.query('INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)', [name, checksum])
        await client.query('COMMIT')
      } catch (err) {
        // A failed ROLLBACK (connection gone) must not hide the error that names the file.
        await client.query('ROLLBACK').catch(() => undefined)
        throw new Error(`Migration ${name} failed: ${(err as Error).message}`, { cause: err })
      }
      applied.push(name)
      log(`applied ${name}`)
    }
    return { applied }
  } finally {
    // Ending the session would drop the lock too, so a client we cannot unlock is destroyed, not pooled.
    const unlocked = await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).then(
      () => true,
      () => false,
    )
    client.release(!unlocked)
  }
}

/** migrations/ at the package root, found from this file so it works from src/ (tsx) and dist/src/ (built). */
function defaultMigrationsDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  while (!existsSync(path.join(dir, 'migrations'))) {
    const parent = path.dirname(dir)
    if (parent === dir) throw new Error('migrations/ not found above ' + fileURLToPath(import.meta.url))
    dir = parent
  }
  return path.join(dir, 'migrations')
}
