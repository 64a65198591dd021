import fp from 'fastify-plugin'
import pg from 'pg'
import type { Config } from '../config.js'

// All database access goes through these two pools. `primary` is the authority for stock and orders;
// `replica` serves catalog reads that may be slightly stale (a later issue adds the lag check).
export interface Db {
  primary: pg.Pool
  replica: pg.Pool
}

declare module 'fastify' {
  interface FastifyInstance {
    db: Db
  }
}

// Postgres returns bigint (int8) and numeric as strings by default; our ids and counters fit in a JS
// number, so parse int8 as a number once, here, rather than in every repository.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value))

export function createPool(connectionString: string, max: number, config: Config, role: string): pg.Pool {
  return new pg.Pool({
    connectionString,
    max,
    connectionTimeoutMillis: 2000,
    idleTimeoutMillis: 30_000,
    statement_timeout: config.DB_STATEMENT_TIMEOUT_MS,
    application_name: `stampede-${role}-${config.NODE_APP_INSTANCE}`,
  })
}

export default fp(
  async (app, opts: { config: Config }) => {
    const { config } = opts
    const db: Db = {
      primary: createPool(config.DATABASE_URL, config.DB_POOL_MAX, config, 'primary'),
      replica: createPool(config.DATABASE_REPLICA_URL, config.DB_REPLICA_POOL_MAX, config, 'replica'),
    }
    // An idle client that loses its server emits 'error' on the pool; unhandled, it would crash the worker.
    for (const [name, pool] of Object.entries(db) as [string, pg.Pool][]) {
      pool.on('error', (err) => app.log.warn({ err, pool: name }, 'idle Postgres client failed'))
    }
    app.decorate('db', db)
    app.addHook('onClose', async () => {
      await Promise.all([db.primary.end(), db.replica.end()])
    })
  },
  { name: 'postgres' },
)
