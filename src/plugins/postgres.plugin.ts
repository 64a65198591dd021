import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { openDatabase, type Db } from '../db/pool.js'
import type { ReplicaLagMonitor } from '../db/replica-lag.js'

declare module 'fastify' {
  interface FastifyInstance {
    db: Db
    replicaLag: ReplicaLagMonitor
  }
}

// The worker's pools (src/db/pool.ts), closed with the app.
export default fp(
  async (app, opts: { config: Config }) => {
    const database = await openDatabase(opts.config, app.metrics, app.log)
    app.decorate('db', database.db)
    app.decorate('replicaLag', database.replicaLag)
    app.addHook('onClose', async () => database.close())
  },
  { name: 'postgres', dependencies: ['metrics'] },
)
