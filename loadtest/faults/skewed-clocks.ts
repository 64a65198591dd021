import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync } from 'node:fs'
import path from 'node:path'
import { REPO_ROOT } from '../../scripts/stack/paths.js'
import { httpStatus, isAlive, terminate, waitFor } from '../../scripts/stack/process.js'
import { stackUp, type StackHandles, type StackOptions } from '../../scripts/stack/stack.js'

// The app's processes with clocks that disagree: PM2's `api` workers and `jobs` process are stopped, and
// the same programs, with the same settings, are started by hand with Debian's libfaketime preloaded
// (what the `faketime` command does), each with its own offset. nginx still balances over the workers' ports, so the load
// reaches them as before. Stopping puts PM2's processes back.

export interface SkewedProcess {
  name: 'api' | 'jobs'
  /** The worker's NODE_APP_INSTANCE (its port is PORT + instance); 0 for jobs. */
  instance: number
  /** faketime's offset, e.g. '-20s' or '+300s'. */
  offset: string
}

const SCRIPTS = { api: 'dist/src/server.js', jobs: 'dist/src/jobs.js' } as const
/** Debian's libfaketime (package faketime), the thread-safe build. */
const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1'

/** Starts `processes` in place of PM2's; the returned function stops them and starts PM2's again. */
export async function runWithSkewedClocks(
  options: StackOptions,
  handles: StackHandles,
  processes: SkewedProcess[],
  log: (message: string) => void,
): Promise<() => Promise<void>> {
  const { env, logsDir, apiPort } = handles.app
  if (!existsSync(LIBFAKETIME)) throw new Error(`${LIBFAKETIME} is missing: apt-get install faketime`)
  for (const name of ['api', 'jobs']) await handles.pm2(['stop', name])
  const started: ChildProcess[] = []
  const stop = async () => {
    for (const child of started) if (child.pid && isAlive(child.pid)) await terminate(child.pid, 15_000)
    // The stack starts PM2's processes again as it does after any change (stopped ones count as changed).
    await stackUp(options, (message) => log(`clocks: ${message}`))
  }
  try {
    for (const p of processes) {
      const out = openSync(path.join(logsDir, `skewed-${p.name}-${p.instance}.log`), 'a')
      // What `faketime -m -f <offset>` does, without its wrapper process between us and node (so the PID
      // is node's own): the multi-threaded libfaketime preloaded, the offset in FAKETIME.
      const child = spawn(process.execPath, [SCRIPTS[p.name]], {
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          ...env,
          NODE_APP_INSTANCE: String(p.instance),
          LD_PRELOAD: LIBFAKETIME,
          FAKETIME: p.offset,
        },
        stdio: ['ignore', out, out],
      })
      closeSync(out)
      started.push(child)
      log(`clocks: ${p.name} ${p.instance} started with its clock ${p.offset} (pid ${child.pid})`)
    }
    const ready = processes.map((p) =>
      p.name === 'api'
        ? `http://127.0.0.1:${apiPort + p.instance}/health/ready`
        : `http://127.0.0.1:${options.ports.jobsMetrics}/metrics`,
    )
    await waitFor(
      'the processes with shifted clocks to answer',
      async () => (await Promise.all(ready.map((url) => httpStatus(url)))).every((s) => s === 200),
      30_000,
    )
    return stop
  } catch (error) {
    await stop()
    throw error
  }
}

/**
 * How far a process's clock is from this one's (ms, within a second): its HTTP answer's Date header is
 * written from its own clock.
 */
export async function clockOffsetOf(url: string): Promise<number> {
  const before = Date.now()
  const response = await fetch(url)
  await response.arrayBuffer()
  const after = Date.now()
  const date = Date.parse(response.headers.get('date') ?? '')
  if (Number.isNaN(date)) throw new Error(`${url} answered without a Date header`)
  // The header has whole seconds: compare with the middle of the exchange, rounded the same way.
  return date - Math.floor((before + after) / 2000) * 1000
}
