// `npm run migrate`: applies pending migrations/*.sql to DATABASE_URL, exits non-zero on failure.
import pg from 'pg'
import { loadConfig } from '../src/config.js'
import { migrate } from '../src/db/migrate.js'

const config = loadConfig()
const pool = new pg.Pool({ connectionString: config.DATABASE_URL, max: 1 })
const target = new URL(config.DATABASE_URL)
try {
  const { applied } = await migrate(pool, { log: (message) => console.log(`migrate: ${message}`) })
  console.log(
    `migrate: ${target.host}${target.pathname} is up to date (${applied.length} migration(s) applied now)`,
  )
} catch (err) {
  console.error('migrate: failed:', err)
  process.exitCode = 1
} finally {
  await pool.end()
}
