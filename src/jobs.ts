import { loadConfigOrExit } from './config.js'
import { buildJobs } from './jobs-app.js'

// The jobs process's entry, as src/server.ts is an API worker's: src/jobs-app.ts builds it, this starts
// it, tells PM2 it is ready, and stops it on a signal (a round under way finishes first).

const jobs = await buildJobs(loadConfigOrExit())
await jobs.start()
let stopping: Promise<void> | null = null
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void (stopping ??= jobs.stop()))
process.send?.('ready')
