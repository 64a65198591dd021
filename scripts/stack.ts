// `npm run stack:up | stack:down [-- --purge] | stack:status [-- --json]` (add `-- --profile test` for the
// tests' stack, `-- --profile ha` for the multi-host profile) and `npm run nginx:check`.
// The local stack without Docker: see docs/local-stack.md. The work is done in scripts/stack/stack.ts;
// the HA profile's (docs/scaling.md) in scripts/stack/ha/ha-stack.ts.
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { LOAD_TEST_NGINX_LIMITS } from '../loadtest/target.js'
import { loadConfig } from '../src/config.js'
import { nginxLimitsFromEnv, NGINX_TEMPLATE, writeAndCheckNginxConf } from './stack/nginx.js'
import { haDown, haProfile, haStatus, haUp, type HaStatus } from './stack/ha/ha-stack.js'
import { MissingPackagesError } from './stack/system-packages.js'
import { stackDown, stackProfile, stackPurge, stackStatus, stackUp, type StackStatus } from './stack/stack.js'

const USAGE =
  'usage: tsx scripts/stack.ts <up|down|status|nginx-check> [--json] [--purge] [--profile dev|test|ha]'

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    json: { type: 'boolean', default: false },
    purge: { type: 'boolean', default: false },
    profile: { type: 'string', default: 'dev' },
  },
})
const command = positionals[0]
const profile = values.profile
if (profile !== 'dev' && profile !== 'test' && profile !== 'ha') {
  throw new Error(`--profile must be dev, test or ha\n${USAGE}`)
}

try {
  if (profile === 'ha') await haCommand()
  else if (command === 'up') {
    const started = Date.now()
    const options = stackProfile(profile)
    await stackUp(options)
    printStatus(await stackStatus(options))
    console.log(`\nstack:${options.name} up in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  } else if (command === 'down') {
    const options = stackProfile(profile)
    if (values.purge) await stackPurge(options)
    else await stackDown(options)
    console.log(`stack:${options.name} down`)
  } else if (command === 'status') {
    const status = await stackStatus(stackProfile(profile))
    if (values.json) console.log(JSON.stringify(status, null, 2))
    else printStatus(status)
  } else if (command === 'nginx-check') {
    await nginxCheck()
  } else {
    console.error(USAGE)
    process.exitCode = 2
  }
} catch (error) {
  console.error(error instanceof MissingPackagesError ? error.message : error)
  process.exitCode = 1
}

/** The HA profile: every server in a network namespace of its own (docs/scaling.md). */
async function haCommand() {
  // The load tests and the demo drive the stack from this machine's one address: as for the dev stack,
  // NGINX_* settings in the environment raise nginx's per-address limits.
  const options = haProfile()
  if (command === 'up') {
    const started = Date.now()
    await haUp(options)
    printHaStatus(await haStatus(options))
    console.log(`\nstack:ha up in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  } else if (command === 'down') {
    await haDown(options)
    console.log('stack:ha down')
  } else if (command === 'status') {
    const status = await haStatus(options)
    if (values.json) console.log(JSON.stringify(status, null, 2))
    else printHaStatus(status)
  } else {
    console.error(USAGE)
    process.exitCode = 2
  }
}

function printHaStatus(s: HaStatus) {
  for (const server of s.servers) {
    const where = `${server.host.padEnd(7)} ${`${server.address}:${server.port}`.padEnd(18)}`
    console.log(
      `${server.up ? 'up  ' : 'DOWN'}  ${server.name.padEnd(9)} ${where} ${server.role.padEnd(13)} pid ${server.pid ?? '-'}`,
    )
  }
  console.log(
    `\npostgres leader: ${s.postgres.leader ?? 'none'}, redis primary: ${s.redis.primary ?? 'none'}`,
  )
  console.log(
    `shop: ${s.urls.nginxUrl}/  (from this machine: the hosts sit on ${s.network.subnet}, bridge ${s.network.bridge})`,
  )
}

function printStatus(s: StackStatus) {
  const row = (name: string, url: string, up: boolean) =>
    console.log(`${up ? 'up  ' : 'DOWN'}  ${name.padEnd(8)} ${url}`)
  row('nginx', s.nginx.url, s.nginx.up)
  row('admin', s.nginx.adminUrl, s.nginx.adminUp)
  s.workers.forEach((w, n) => row(`worker ${n}`, w.url, w.up))
  s.metrics.forEach((m, n) => row(`metrics ${n}`, m.url, m.up))
  // Passwords stay out of the terminal.
  const redact = (url: string) => url.replace(/\/\/([^:@/]+):[^@/]+@/, '//$1:***@')
  row('primary', redact(s.primary.url), s.primary.up)
  row('replica', redact(s.replica.url), s.replica.up)
  row('redis', redact(s.redis.url), s.redis.up)
  row(
    'prometheus',
    s.prometheus.installed ? s.prometheus.url : 'not installed (apt-get install prometheus)',
    s.prometheus.up,
  )
}

/** CI: renders nginx.conf with the default settings into a temporary folder and runs `nginx -t` on it. */
async function nginxCheck() {
  const config = loadConfig({})
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stampede-nginx-check-'))
  try {
    // With the default limits, and with the raised ones every load test and the demo run with.
    for (const env of [{}, LOAD_TEST_NGINX_LIMITS]) {
      await writeAndCheckNginxConf({
        stackDir: dir,
        port: config.NGINX_PORT,
        adminPort: config.NGINX_ADMIN_PORT,
        upstreams: Array.from({ length: config.API_INSTANCES }, (_, n) => `127.0.0.1:${config.PORT + n}`),
        jobsMetrics: `127.0.0.1:${config.JOBS_METRICS_PORT}`,
        limits: nginxLimitsFromEnv(env),
      })
    }
    console.log(`nginx -t: ${NGINX_TEMPLATE} renders to a valid configuration (default and load-test limits)`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
