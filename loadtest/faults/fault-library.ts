import { setTimeout as sleep } from 'node:timers/promises'
import { httpStatus } from '../../scripts/stack/process.js'
import {
  stackUrls,
  startService,
  stopService,
  type ServiceName,
  type StackHandles,
  type StackOptions,
} from '../../scripts/stack/stack.js'

// The levers of the fault campaign: kill, pause and resume, stop and start a server of the local stack
// by name, and pick the moment to do it from a seeded random source, so that a failing run can be
// replayed with the same seed (`npm run faults -- <case> --seed N`). Every action is logged with its
// time since the load started; the log goes into the case's result and into docs/reliability.md.

/** mulberry32: a tiny seeded generator. The same seed gives the same sequence of moments and victims. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export type Server = ServiceName | 'nginx'

export interface FaultEvent {
  /** ms since the load started. */
  atMs: number
  what: string
}

export interface FaultLibraryOptions {
  options: StackOptions
  handles: StackHandles
  random: () => number
  /** ms since the load started. */
  elapsedMs(): number
  /** Units the sale still offers, as last sampled (undefined before the first sample). */
  remaining(): number | undefined
  log(message: string): void
}

export function createFaultLibrary(o: FaultLibraryOptions) {
  const events: FaultEvent[] = []
  const paused = new Set<number>()
  const note = (what: string) => {
    events.push({ atMs: Math.round(o.elapsedMs()), what })
    o.log(`fault: ${what}`)
  }

  function pidOf(server: Server): number {
    const pid = o.handles.pid(server)
    if (pid === undefined) throw new Error(`${server} is not running: nothing to inject a fault into`)
    return pid
  }

  return {
    events,
    note,
    random: o.random,

    /** A moment between `fromMs` and `toMs` after the load started (seeded), waited for. */
    async waitForRandomMoment(fromMs: number, toMs: number): Promise<void> {
      const at = fromMs + o.random() * (toMs - fromMs)
      await sleep(Math.max(0, at - o.elapsedMs()))
      // A fault after the last unit sold tests nothing: the scenarios size their sales so units remain.
      const left = o.remaining()
      if (left === 0) throw new Error('the sale sold out before the fault: give it more units')
    },

    /** SIGKILL: the process gets no chance to clean up, as in a crash or the OOM killer. */
    kill(server: Server): void {
      process.kill(pidOf(server), 'SIGKILL')
      note(`SIGKILL ${server}`)
    },

    /** SIGSTOP now; the returned function sends SIGCONT. The process keeps its sockets open meanwhile. */
    pause(server: Server): () => void {
      const pid = pidOf(server)
      process.kill(pid, 'SIGSTOP')
      paused.add(pid)
      note(`SIGSTOP ${server}`)
      return () => {
        process.kill(pid, 'SIGCONT')
        paused.delete(pid)
        note(`SIGCONT ${server}`)
      }
    },

    /** Resumes whatever is still paused: a case that failed half-way must not leave a frozen server. */
    resumeAll(): void {
      for (const pid of paused) process.kill(pid, 'SIGCONT')
      paused.clear()
    },

    /** Starts a stopped or killed server again (Redis reloads its AOF, Postgres runs crash recovery). */
    async start(server: ServiceName): Promise<void> {
      await startService(o.options, server)
      note(`${server} started again`)
    },

    /** A clean stop (Redis SHUTDOWN NOSAVE, pg_ctl -m fast). */
    async stop(server: ServiceName): Promise<void> {
      await stopService(o.options, server)
      note(`${server} stopped`)
    },

    /** `pg_ctl stop -m immediate`: Postgres drops every connection at once and skips the checkpoint. */
    async crashPostgres(role: 'primary' | 'replica'): Promise<void> {
      await o.handles.crashPostgres(role)
      note(`pg_ctl -m immediate ${role}`)
    },

    /**
     * SIGKILLs one API worker, chosen by the seeded source among the workers that answer; PM2 starts a
     * new one. It never kills the last worker that answers: it first waits for a replacement to be up,
     * since a cluster with no worker at all fails every request, which is an outage, not a crash.
     * With `notAfterMs`, a kill that would come later than that into the load (the replacement took
     * long to come up) does not happen: null.
     */
    async killWorker(options: { notAfterMs?: number } = {}): Promise<number | null> {
      const urls = stackUrls(o.options).workers
      const live = async () => {
        const statuses = await Promise.all(urls.map((url) => httpStatus(`${url}/health/live`, 500)))
        return statuses.flatMap((status, instance) => (status === 200 ? [instance] : []))
      }
      let up = await live()
      const deadline = Date.now() + 30_000
      while (up.length < 2 && urls.length > 1) {
        if (Date.now() > deadline) throw new Error('no second worker came up within 30 s')
        await sleep(50)
        up = await live()
      }
      const instance = up[Math.floor(o.random() * up.length)]!
      const victim = (await o.handles.appProcesses()).find(
        (p) => p.name === 'api' && p.instance === instance && p.pid > 0,
      )
      if (!victim) throw new Error(`api worker ${instance} has no process`)
      if (options.notAfterMs !== undefined && o.elapsedMs() > options.notAfterMs) return null
      process.kill(victim.pid, 'SIGKILL')
      note(`SIGKILL api worker ${instance} (pid ${victim.pid})`)
      return victim.pid
    },

    /** SIGKILLs the jobs process (sweeper, reconciler); PM2 starts a new one. */
    async killJobs(): Promise<number> {
      const victim = (await o.handles.appProcesses()).find((p) => p.name === 'jobs' && p.pid > 0)
      if (!victim) throw new Error('no jobs process is running')
      process.kill(victim.pid, 'SIGKILL')
      note(`SIGKILL jobs (pid ${victim.pid})`)
      return victim.pid
    },

    async reloadNginx(): Promise<void> {
      await o.handles.reloadNginx()
      note('nginx -s reload')
    },

    async reloadWorkers(): Promise<void> {
      note('pm2 reload api (start)')
      await o.handles.pm2(['reload', 'api'])
      note('pm2 reload api (done)')
    },
  }
}

export type FaultLibrary = ReturnType<typeof createFaultLibrary>
