// `npm run demo [-- --keep] [--runtime local|compose] [--units 200 --users 2000 --connections 100 --duration 8
// --strategy redis-gate]`
// The whole story in one command on a fresh machine: bring up the local stack (installing Postgres, Redis
// and nginx as root when missing), migrate and seed, run a flash-sale stampede with a progress bar (and
// the live dashboard's URL to watch it in a browser), check the five invariants, print the report, and
// stop the stack again unless --keep. Exits 1 if an invariant broke. A stack that was already running is
// left running, with its default settings put back.
// `--runtime compose` runs the same stampede and checks against docker-compose.yml instead (project
// `stampede`, built and started here, removed with its volumes at the end unless --keep): docs/docker.md.
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { STOCK_STRATEGIES, type StockStrategyName } from '../src/config.js'
import { containerRuntimeAvailable } from './stack/container-runtime.js'
import {
  composeDown,
  composePort,
  composeUp,
  useContainerEngine,
  type ComposeProject,
} from './stack/compose.js'
import { AdminApi } from '../loadtest/admin.js'
import { bold, dim, formatRun, green, red, writeReports } from '../loadtest/report.js'
import { stampede, STAMPEDE_DEFAULTS } from '../loadtest/scenarios/stampede.js'
import {
  remoteTarget,
  LOAD_TEST_NGINX_LIMITS,
  loadStackOptions,
  loadTarget,
  loadTestAppEnv,
  type LoadTarget,
} from '../loadtest/target.js'
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
    runtime: { type: 'string', default: 'local' },
  },
})
const strategy = values.strategy as StockStrategyName
if (!STOCK_STRATEGIES.includes(strategy)) {
  console.error(`--strategy ${strategy}: expected one of ${STOCK_STRATEGIES.join(', ')}`)
  process.exit(2)
}

if (values.runtime !== 'local' && values.runtime !== 'compose') {
  console.error(`--runtime ${values.runtime}: expected local or compose`)
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
const ok = values.runtime === 'compose' ? await demoInContainers() : await demoOnLocalStack()

/** The stampede against a target, its report printed and written; true when every invariant held. */
async function runStampede(target: LoadTarget): Promise<boolean> {
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
    console.log(`${bold('report')}      ${files.html}`)
    console.log(`${bold('storefront')}  ${target.nginxUrl}/   (API docs ${target.nginxUrl}/docs)`)
    console.log(`${bold('dashboard')}   ${target.nginxUrl}/dashboard   (the last five minutes, live)`)
    console.log(
      `${bold('admin')}       ${target.adminUrl}/api/admin/sales/${run.sale?.saleId}/audit  (loopback only)`,
    )
    return run.verification.ok
  } finally {
    await target.close()
  }
}

async function demoOnLocalStack(): Promise<boolean> {
  if (await containerRuntimeAvailable()) {
    log(
      'a container runtime answers; the demo still runs the local stack (--runtime compose: docs/docker.md)',
    )
  } else {
    log('no container runtime: using the local stack (Postgres primary + replica, Redis, PM2, nginx)')
  }

  const options = loadStackOptions(process.env, strategy)
  const wasRunning = (await stackStatus(options)).nginx.up
  try {
    await stackUp(options, (message) => log(`stack: ${message}`))
    return await runStampede(loadTarget(options))
  } catch (error) {
    console.error(
      red(error instanceof MissingPackagesError ? error.message : String((error as Error).stack ?? error)),
    )
    return false
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
}

async function demoInContainers(): Promise<boolean> {
  const env: NodeJS.ProcessEnv = { ...LOAD_TEST_NGINX_LIMITS, ...process.env }
  let project: ComposeProject | undefined
  try {
    const engine = await useContainerEngine(env)
    log(
      `containers: docker-compose.yml on ${engine.podman ? 'podman' : 'a Docker engine'} (${engine.dockerHost})`,
    )
    const appEnv = loadTestAppEnv(env, strategy)
    // A secret of this run's own: the compose file's demo default is for trying it by hand.
    env.JWT_SECRET ||= randomBytes(48).toString('base64url')
    project = { name: 'stampede', engine, env: { ...env, ...appEnv } }
    const upStarted = Date.now()
    await composeUp(project, (line) => {
      // The build output is long: the demo shows the containers coming up and any error.
      if (
        /^(Creating|Starting|Recreating|ERROR|Successfully tagged|Building \w+$|Pulling)|error/i.test(line)
      ) {
        log(`compose: ${line}`)
      }
    })
    log(`containers: every service healthy after ${((Date.now() - upStarted) / 1000).toFixed(1)} s`)
    const nginx = await composePort(project, 'nginx', 28080)
    const admin = await composePort(project, 'nginx', 28081)
    const primary = await composePort(project, 'postgres', 5432)
    return await runStampede(
      remoteTarget(
        {
          nginxUrl: `http://${nginx}`,
          adminUrl: `http://${admin}`,
          databaseUrl: `postgres://stampede:stampede@${primary}/stampede`,
        },
        appEnv,
        env,
      ),
    )
  } catch (error) {
    console.error(red(String((error as Error).stack ?? error)))
    return false
  } finally {
    if (project && values.keep) {
      log('--keep: the containers stay up (docker-compose -p stampede down -v removes them)')
    } else if (project) {
      log('removing the containers and their volumes (compose down -v)')
      await composeDown(project, () => undefined).catch((error: unknown) => {
        console.error(red(`compose down failed: ${String(error)}`))
      })
    }
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
