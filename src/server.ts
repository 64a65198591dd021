import { buildApp } from './app.js'
import { loadConfigOrExit } from './config.js'
import { startMetricsServer } from './metrics-server.js'

const config = loadConfigOrExit({ signsTokens: true })
const app = await buildApp(config).catch((err: Error) => {
  console.error('could not build the app:', err)
  process.exit(1)
})
// Worker N of the PM2 cluster gets its own port, so nginx balances over named upstreams.
const port = config.PORT + config.NODE_APP_INSTANCE

// A worker that cannot start must die loudly: PM2 would otherwise keep a worker that never listens.
await app.listen({ host: config.HOST, port }).catch((err: Error) => {
  app.log.fatal({ err }, 'could not start')
  process.exit(1)
})
const metricsServer = await startMetricsServer(
  app.metrics.registry,
  config.HOST,
  config.METRICS_PORT + config.NODE_APP_INSTANCE,
).catch((err: Error) => {
  app.log.fatal({ err }, 'could not start the metrics server')
  process.exit(1)
})
// Tells PM2 (wait_ready) that this worker is ready, so a reload never swaps in a worker still booting.
process.send?.('ready')

let stopping = false
async function shutdown(signal: string): Promise<void> {
  if (stopping) return
  stopping = true
  app.log.info({ signal, drainMs: config.SHUTDOWN_DRAIN_MS }, 'draining before shutdown')
  app.startDraining()
  await new Promise((resolve) => setTimeout(resolve, config.SHUTDOWN_DRAIN_MS))
  // Stops accepting, waits for in-flight requests, then runs every onClose hook (pools, Redis).
  await app.close()
  metricsServer.close()
  app.log.info('stopped')
  process.exit(0)
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    shutdown(signal).catch((err) => {
      app.log.error({ err }, 'shutdown failed')
      process.exit(1)
    })
  })
}
