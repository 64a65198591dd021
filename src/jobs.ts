import { setTimeout as sleep } from 'node:timers/promises'
import { loadConfigOrExit } from './config.js'
import { deleteExpiredKeys } from './idempotency/idempotency.repository.js'
import { createMetrics } from './metrics.js'
import { sweepExpiredReservations } from './orders/expiry-sweeper.js'
import { createPool } from './plugins/postgres.plugin.js'

// The `jobs` process (one PM2 fork): background work that no request waits for. Every job here is
// safe to run in two processes at once, so a second jobs process (or a restart overlap) is harmless.

const config = loadConfigOrExit()
const primary = createPool(config.DATABASE_URL, 4, config, 'jobs')
const metrics = createMetrics()
const log = (fields: Record<string, unknown>, msg: string) =>
  console.log(JSON.stringify({ time: new Date().toISOString(), process: 'jobs', msg, ...fields }))

const stop = new AbortController()
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => stop.abort())

process.send?.('ready')
log({ intervalMs: config.SWEEP_INTERVAL_MS }, 'jobs started')
while (!stop.signal.aborted) {
  try {
    const expired = await sweepExpiredReservations(primary, metrics)
    const keys = await deleteExpiredKeys(primary, 5000)
    if (expired > 0 || keys > 0) log({ expired, idempotencyKeysDeleted: keys }, 'swept')
  } catch (err) {
    log({ err: String(err) }, 'sweep failed; retrying next interval')
  }
  await sleep(config.SWEEP_INTERVAL_MS, undefined, { signal: stop.signal }).catch(() => undefined)
}
await primary.end()
log({}, 'jobs stopped')
