import { spawn } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { REPO_ROOT } from './paths.js'
import {
  httpStatus,
  isAlive,
  livePidFromFile,
  removeStalePidFile,
  run,
  stopFromPidFile,
  waitFor,
  type Log,
} from './process.js'

// Prometheus from Debian's `prometheus` package, when it is installed (the stack never installs it: it is
// optional, and the stack works without it). The committed deploy/prometheus/ files are the configuration;
// this module copies them to <stack>/prometheus/, writes the scrape targets with this stack's ports into
// targets/, and runs Prometheus with its data, pid file and log in the same folder.

export const PROMETHEUS_DIR = path.join(REPO_ROOT, 'deploy', 'prometheus')
/** The local stack's Prometheus listens here (+ the stack's port offset). */
export const PROMETHEUS_PORT = 29090

export interface PrometheusSetup {
  /** <stack>/prometheus */
  dir: string
  port: number
  /** host:port of every API worker's metrics server. */
  apiTargets: string[]
  /** host:port of the jobs process's metrics server. */
  jobsTarget: string
}

export interface PrometheusStatus {
  url: string
  installed: boolean
  up: boolean
}

const confFile = (p: PrometheusSetup) => path.join(p.dir, 'prometheus.yml')
const pidFile = (p: PrometheusSetup) => path.join(p.dir, 'prometheus.pid')
const logFile = (p: PrometheusSetup) => path.join(p.dir, 'prometheus.log')
const url = (p: PrometheusSetup) => `http://127.0.0.1:${p.port}`
// Prometheus does not write a pid file; we do. Its command line names our config file, which identifies it.
const processName = (p: PrometheusSetup) => `--config.file=${confFile(p)}`

export const prometheusPid = (p: PrometheusSetup) => livePidFromFile(pidFile(p), processName(p))

const onPath = (command: string) =>
  (process.env.PATH ?? '').split(':').some((dir) => dir && existsSync(path.join(dir, command)))

/** Debian's `prometheus` package: both the server and promtool. */
export const prometheusInstalled = () => onPath('prometheus') && onPath('promtool')

/** The target files Prometheus reads (file_sd): one per job of deploy/prometheus/prometheus.yml. */
export function renderTargets(p: Pick<PrometheusSetup, 'apiTargets' | 'jobsTarget'>): Record<string, string> {
  const header = '# Written by scripts/stack/prometheus.ts on every stack:up: edit that file, not this one.\n'
  const list = (targets: string[]) => `- targets: [${targets.map((t) => `'${t}'`).join(', ')}]\n`
  return {
    'api.yml': header + list(p.apiTargets),
    'jobs.yml': header + list([p.jobsTarget]),
  }
}

/**
 * Copies prometheus.yml and alerts.yml, writes the targets, and asks promtool to check the result (rules
 * included). Returns true when prometheus.yml or alerts.yml changed, which needs a reload; Prometheus
 * notices changed target files by itself.
 */
export async function writeAndCheckPrometheusConf(p: PrometheusSetup): Promise<boolean> {
  mkdirSync(path.join(p.dir, 'targets'), { recursive: true })
  let changed = false
  for (const name of ['prometheus.yml', 'alerts.yml']) {
    const target = path.join(p.dir, name)
    const content = readFileSync(path.join(PROMETHEUS_DIR, name), 'utf8')
    if (existsSync(target) && readFileSync(target, 'utf8') === content) continue
    writeFileSync(target, content)
    changed = true
  }
  for (const [name, content] of Object.entries(renderTargets(p))) {
    writeFileSync(path.join(p.dir, 'targets', name), content)
  }
  await run('promtool', ['check', 'config', confFile(p)]).catch((error: Error) => {
    throw new Error(
      `promtool check config failed on ${confFile(p)} (copied from deploy/prometheus/):\n${error.message}`,
    )
  })
  return changed
}

/** Starts Prometheus, or reloads it when its configuration changed; without the package, says so and goes on. */
export async function ensurePrometheus(p: PrometheusSetup, log: Log): Promise<void> {
  if (!prometheusInstalled()) {
    log('prometheus: not installed, skipped (apt-get install prometheus to get it)')
    return
  }
  const changed = await writeAndCheckPrometheusConf(p)
  const running = prometheusPid(p)
  if (running !== undefined) {
    if (changed) {
      log('prometheus: configuration changed, reloading')
      process.kill(running, 'SIGHUP')
    }
    return
  }
  removeStalePidFile(pidFile(p), processName(p))
  log(`prometheus: starting on ${url(p)}`)
  const args = [
    processName(p),
    `--storage.tsdb.path=${path.join(p.dir, 'data')}`,
    '--storage.tsdb.retention.time=7d',
    `--web.listen-address=127.0.0.1:${p.port}`,
    `--web.external-url=${url(p)}/`,
  ]
  // Prometheus stays in the foreground: run it detached, with its output in a log file, like a daemon.
  const out = openSync(logFile(p), 'a')
  const child = spawn('prometheus', args, { cwd: p.dir, detached: true, stdio: ['ignore', out, out] })
  closeSync(out)
  child.on('error', () => undefined) // a failed spawn leaves child.pid undefined, handled below
  child.unref()
  const pid = child.pid
  if (pid === undefined) throw new Error('prometheus: could not start the prometheus binary')
  writeFileSync(pidFile(p), `${pid}\n`)
  await waitFor(`prometheus on port ${p.port}`, async () => {
    if (!isAlive(pid)) throw new Error(`prometheus exited at start; see ${logFile(p)}`)
    return (await httpStatus(`${url(p)}/-/ready`)) === 200
  })
}

export async function stopPrometheus(p: PrometheusSetup, log: Log): Promise<void> {
  // SIGTERM: Prometheus closes its database cleanly; terminate() escalates if it takes too long.
  await stopFromPidFile(pidFile(p), processName(p), () => log('prometheus: stopping'))
}

export async function prometheusStatus(p: PrometheusSetup): Promise<PrometheusStatus> {
  const installed = prometheusInstalled()
  const up = installed && (await httpStatus(`${url(p)}/-/ready`)) === 200
  return { url: url(p), installed, up }
}
