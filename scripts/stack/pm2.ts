import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { CONFIG_KEYS } from '../../src/config.js'
import { REPO_ROOT } from './paths.js'
import { commandLine, httpStatus, livePidFromFile, run, terminate, waitFor, type Log } from './process.js'

// The app under PM2, in cluster mode, with a PM2 daemon of its own (PM2_HOME inside the stack dir) so the
// stack never touches a PM2 the user runs elsewhere, and `down` can kill exactly this daemon.

export interface AppSetup {
  pm2Home: string
  logsDir: string
  ecosystem: string
  /** Settings for the workers (DATABASE_URL, PORT, ...), read by ecosystem.config.cjs. */
  env: Record<string, string>
  instances: number
  apiPort: number
  /** The address the workers listen on (HOST): 127.0.0.1 unless the app runs on an HA host. */
  host?: string
  /** The network namespace of an HA host (scripts/stack/ha/): PM2 and its workers run inside it. */
  netns?: string
}

const PM2 = path.join(REPO_ROOT, 'node_modules', '.bin', 'pm2')
// The ecosystem's apps: the `api` cluster (one worker per instance) and the `jobs` fork process.
const APPS = ['api', 'jobs']

export function pm2(a: AppSetup, args: string[]) {
  const env = {
    ...process.env,
    ...a.env,
    PM2_HOME: a.pm2Home,
    // No banner, no version check over the network.
    PM2_DISCRETE_MODE: 'true',
    PM2_DISABLE_VERSION_CHECK: 'true',
  }
  // `ip netns exec` execs PM2 inside the namespace; the daemon it spawns, and every worker, stay there.
  if (a.netns) return run('ip', ['netns', 'exec', a.netns, PM2, ...args], { cwd: REPO_ROOT, env })
  return run(PM2, args, { cwd: REPO_ROOT, env })
}

const daemonPidFile = (a: AppSetup) => path.join(a.pm2Home, 'pm2.pid')
/**
 * The daemon's PID. Its process title names its PM2_HOME, so a reused PID cannot be mistaken for it;
 * but a title is only as long as the command line the process started with, so a long PM2_HOME shows
 * cut short ("God Daemon (/work/a-long-checkout/.stack/"): a prefix of the home counts.
 */
export function daemonPid(a: AppSetup): number | undefined {
  const marker = 'God Daemon ('
  const pid = livePidFromFile(daemonPidFile(a), marker)
  if (pid === undefined) return undefined
  const title = commandLine(pid)
  const named = title.slice(title.indexOf(marker) + marker.length)
  return named.length > 0 && `${a.pm2Home})`.startsWith(named) ? pid : undefined
}

export const workerUrls = (a: AppSetup) =>
  Array.from({ length: a.instances }, (_, n) => `http://${a.host ?? '127.0.0.1'}:${a.apiPort + n}`)

export interface Pm2Process {
  name: string
  pid: number
  pm2_env: { status: string; NODE_APP_INSTANCE?: number }
}

export async function listApp(a: AppSetup): Promise<Pm2Process[]> {
  const { stdout } = await pm2(a, ['jlist'])
  const json = stdout.slice(stdout.indexOf('['))
  return (JSON.parse(json) as Pm2Process[]).filter((p) => APPS.includes(p.name))
}

/**
 * Starts the workers (from the build in dist/) unless they are all online with the current build and
 * settings, and waits until every worker answers GET /health/live.
 */
export async function ensureApp(a: AppSetup, log: Log): Promise<void> {
  mkdirSync(a.logsDir, { recursive: true })
  if (daemonPid(a) === undefined) removeDaemonLeftovers(a)

  const fingerprintFile = path.join(a.pm2Home, 'stack-fingerprint')
  const fingerprint = appFingerprint(a)
  const running = await listApp(a)
  const upToDate =
    existsSync(fingerprintFile) &&
    readFileSync(fingerprintFile, 'utf8') === fingerprint &&
    running.length === a.instances + 1 &&
    running.every((p) => p.pm2_env.status === 'online') &&
    (await workersLive(a))
  if (upToDate) return
  rmSync(fingerprintFile, { force: true })
  if (running.length > 0) {
    log('app: build or settings changed, restarting the workers')
    await pm2(a, ['delete', a.ecosystem])
  }
  log(`app: pm2 start ${path.basename(a.ecosystem)} (${a.instances} workers from port ${a.apiPort})`)
  // With wait_ready this returns once every worker said 'ready', or after listen_timeout per worker: then
  // the workers answer at once, or never (PM2 keeps a worker whose startup promise rejected "online").
  await pm2(a, ['start', a.ecosystem])
  await waitForWorkers(a)
  writeFileSync(fingerprintFile, fingerprint)
}

const workersLive = async (a: AppSetup) =>
  (await Promise.all(workerUrls(a).map((url) => httpStatus(`${url}/health/live`)))).every((s) => s === 200)

async function waitForWorkers(a: AppSetup): Promise<void> {
  try {
    await waitFor('every worker to answer GET /health/live', () => workersLive(a), 30_000)
  } catch (error) {
    throw new Error(`${(error as Error).message}${errLogTail(a)}`)
  }
}

function errLogTail(a: AppSetup): string {
  const errLog = path.join(a.logsDir, 'api.err.log')
  const tail = existsSync(errLog)
    ? readFileSync(errLog, 'utf8').trimEnd().split('\n').slice(-20).join('\n')
    : ''
  return `\nLast lines of ${errLog}:\n${tail}`
}

/** `pm2 kill` for this PM2_HOME, then makes sure the daemon and every worker it had are gone. */
export async function stopApp(a: AppSetup, log: Log): Promise<void> {
  const daemon = daemonPid(a)
  if (daemon === undefined) {
    removeDaemonLeftovers(a)
    return
  }
  log('app: pm2 kill')
  const workers = (await listApp(a).catch(() => []))
    .filter((p) => p.pid > 0)
    .map((p) => ({ pid: p.pid, title: commandLine(p.pid) }))
  await pm2(a, ['kill']).catch(() => undefined)
  if (daemonPid(a) === daemon) await terminate(daemon)
  // Workers are the daemon's children; pm2 kill stops them, and a worker whose daemon died exits when its
  // IPC channel closes. This only catches a worker stuck past its kill_timeout (same PID, same title).
  for (const { pid, title } of workers) if (title && commandLine(pid) === title) await terminate(pid)
  removeDaemonLeftovers(a)
}

/** A daemon killed with -9 leaves its pid file and sockets; a new daemon must not trip over them. */
function removeDaemonLeftovers(a: AppSetup) {
  for (const file of ['pm2.pid', 'rpc.sock', 'pub.sock']) rmSync(path.join(a.pm2Home, file), { force: true })
}

/**
 * Changes when the build output, the process file or the workers' settings change. The workers get the
 * environment of `pm2 start` (this process's) with the stack's own settings on top, so a setting given
 * in the shell (`STOCK_STRATEGY=atomic npm run stack:up`) counts too, or it would be ignored by workers
 * that are already running.
 */
export function appFingerprint(a: AppSetup, env: NodeJS.ProcessEnv = process.env): string {
  const hash = createHash('sha256')
  const settings = Object.fromEntries(
    CONFIG_KEYS.flatMap((key) => {
      const value = a.env[key] ?? env[key]
      return value === undefined ? [] : [[key, value]]
    }),
  )
  hash.update(JSON.stringify({ env: a.env, settings, instances: a.instances }))
  hash.update(readFileSync(a.ecosystem))
  const dist = path.join(REPO_ROOT, 'dist', 'src')
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name)
      if (entry.isDirectory()) walk(file)
      else if (entry.name.endsWith('.js')) hash.update(`${file}:${statSync(file).mtimeMs}`)
    }
  }
  if (existsSync(dist)) walk(dist)
  return hash.digest('hex')
}
