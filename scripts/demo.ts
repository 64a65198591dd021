// `npm run demo [-- --keep] [--units 200 --users 2000 --connections 100 --duration 8 --strategy redis-gate]`
// The whole story in one command on a fresh machine: bring up the local stack (installing Postgres, Redis
// and nginx as root when missing), migrate and seed, run a flash-sale stampede with a progress bar (and
// the live dashboard's URL to watch it in a browser), check the five invariants, print the report, and
// stop the stack again unless --keep. Exits 1 if an invariant broke. A stack that was already running is left running, with its default settings put back.
import { parseArgs } from 'node:util'
import { STOCK_STRATEGIES, type StockStrategyName } from '../src/config.js'
import { containerRuntimeAvailable } from './stack/container-runtime.js'
import { AdminApi } from '../loadtest/admin.js'
import { bold, dim, formatRun, green, red, writeReports } from '../loadtest/report.js'
import { stampede, STAMPEDE_DEFAULTS } from '../loadtest/scenarios/stampede.js'
import { loadStackOptions, loadTarget } from '../loadtest/target.js'
import { MissingPackagesError } from './stack/system-packages.js'
import { stackDown, stackOptionsFromEnv, stackStatus, stackUp } from './stack/stack.js'

const { values } = parseArgs({
  options: {
    keep: { type: 'boolean', default: false },
    units: { type: 'string', default: '200' },
    users: { type: 'string', default: '2000' },
    connections: { type: 'string', default: '100' },
    duration: { type: 'string', default: '8' },
    strategy: { type: 'string', default: 'redis-gate' },
  },
})
const strategy = values.strategy as StockStrategyName
if (!STOCK_STRATEGIES.includes(strategy)) {
  console.error(`--strategy ${strategy}: expected one of ${STOCK_STRATEGIES.join(', ')}`)
  process.exit(2)
}

const started = Date.now()
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`
const log = (message: string) => console.log(dim(`[demo +${elapsed()}]`), message)

console.log(
  bold('Stampede demo: a flash sale against the whole stack, then the five invariants checked.\n') +
    `${values.units} units, ${values.users} buyers with their own tokens, ${values.connections} connections, ` +
    `${values.duration} s, stock strategy ${strategy}.\n`,
)
if (await containerRuntimeAvailable()) {
  log('a container runtime answers; the demo still runs the local stack (docker compose up: docs/docker.md)')
} else {
  log('no container runtime: using the local stack (Postgres primary + replica, Redis, PM2, nginx)')
}

const options = loadStackOptions(process.env, strategy)
const wasRunning = (await stackStatus(options)).nginx.up
let ok = false
try {
  await stackUp(options, (message) => log(`stack: ${message}`))
  const target = loadTarget(options)
  try {
    log(`live dashboard: ${target.nginxUrl}/dashboard  (open it now to watch the stampede)`)
    const admin = await AdminApi.connect(target)
    const run = await stampede(
      { target, admin, log },
      {
        ...STAMPEDE_DEFAULTS,
        units: Number(values.units),
        users: Number(values.users),
        connections: Number(values.connections),
        duration: Number(values.duration),
      },
    )
    console.log(`\n${formatRun(run)}\n`)
    const files = writeReports('demo', [run])
    ok = run.verification.ok
    console.log(`${bold('report')}      ${files.html}`)
    console.log(`${bold('storefront')}  ${target.nginxUrl}/   (API docs ${target.nginxUrl}/docs)`)
    console.log(`${bold('dashboard')}   ${target.nginxUrl}/dashboard   (the last five minutes, live)`)
    console.log(
      `${bold('admin')}       ${target.adminUrl}/api/admin/sales/${run.sale?.saleId}/audit  (loopback only)`,
    )
  } finally {
    await target.close()
  }
} catch (error) {
  console.error(
    red(error instanceof MissingPackagesError ? error.message : String((error as Error).stack ?? error)),
  )
  process.exitCode = 1
} finally {
  if (values.keep) {
    log('--keep: the stack stays up with load-test settings; `npm run stack:up` restores the defaults')
  } else if (wasRunning) {
    log('the stack was running before the demo: putting its default settings back')
    await stackUp(stackOptionsFromEnv(process.env), () => undefined)
  } else {
    log('stopping the stack (npm run demo -- --keep leaves it running)')
    await stackDown(options, () => undefined)
  }
}

if (ok) {
  console.log(green(bold(`\ndemo done in ${elapsed()}: every invariant held`)))
} else {
  console.error(
    red(bold(`\ndemo done in ${elapsed()}: FAILED (an invariant broke, or the run could not finish)`)),
  )
  process.exitCode = 1
}
