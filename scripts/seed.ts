// `npm run seed`: inserts the demo catalogue and demo users into DATABASE_URL (run `npm run migrate` first).
import pg from 'pg'
import { loadConfig } from '../src/config.js'
import { seed } from '../src/demo/seed.js'

const config = loadConfig()
const pool = new pg.Pool({ connectionString: config.DATABASE_URL, max: 1 })
try {
  const result = await seed(pool, config, { log: (message) => console.log(`seed: ${message}`) })
  console.log(`seed: done; ${result.products} demo products and ${result.users} demo users present`)
} catch (err) {
  console.error('seed: failed:', err)
  process.exitCode = 1
} finally {
  await pool.end()
}
