import { spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs'
import net from 'node:net'

export type Log = (message: string) => void

export interface RunOptions {
  cwd?: string
  env?: NodeJS.ProcessEnv
  /** Run as this user via `runuser` (only meaningful when we are root). */
  asUser?: string
  /** Throw when the exit code is not 0 (default true). */
  check?: boolean
}

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

export const isRoot = () => process.getuid?.() === 0

/** Runs a command to completion and captures its output; a failing command throws with its stderr. */
export function run(command: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const [file, argv] = options.asUser
    ? ['runuser', ['-u', options.asUser, '--', command, ...args]]
    : [command, args]
  return new Promise((resolve, reject) => {
    // stdin is closed so a command that would prompt (a password, a pager) fails instead of hanging.
    const child = spawn(file, argv, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.on('error', reject)
    child.on('close', (code) => {
      const result = { code: code ?? 1, stdout, stderr }
      if (result.code !== 0 && options.check !== false) {
        const output = (stderr.trim() || stdout.trim()).split('\n').slice(-15).join('\n')
        reject(new Error(`${[file, ...argv].join(' ')} exited with ${result.code}\n${output}`))
      } else resolve(result)
    })
  })
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  // A killed daemon whose parent never reaps it (PID 1 in many containers) stays a zombie: dead all the same.
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

/** The command line of a live process, or '' when it is gone (Linux /proc). */
export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim()
  } catch {
    return ''
  }
}

/**
 * The PID recorded in a pid file, if that process is alive and its command line contains `expect`.
 * A PID alone is not proof: after a crash the number may have been reused by an unrelated process,
 * and signalling that one is exactly what `down` must never do.
 */
export function livePidFromFile(file: string, expect: string): number | undefined {
  if (!existsSync(file)) return undefined
  const pid = Number.parseInt(readFileSync(file, 'utf8').split('\n')[0] ?? '', 10)
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined
  return commandLine(pid).includes(expect) ? pid : undefined
}

/** Removes a pid file whose process is gone (or is not ours); returns true when it was stale. */
export function removeStalePidFile(file: string, expect: string): boolean {
  if (!existsSync(file) || livePidFromFile(file, expect) !== undefined) return false
  rmSync(file, { force: true })
  return true
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it returns true; throws `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  for (let delay = 25; ; delay = Math.min(delay * 2, 250)) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(delay)
  }
}

/** Sends SIGTERM, waits, then SIGKILL: used only on PIDs that livePidFromFile vouched for. */
export async function terminate(pid: number, graceMs = 10_000) {
  try {
    process.kill(pid, 'SIGTERM')
  } catch {
    return
  }
  try {
    await waitFor(`process ${pid} to exit`, () => !isAlive(pid), graceMs)
  } catch {
    process.kill(pid, 'SIGKILL')
    await waitFor(`process ${pid} to exit after SIGKILL`, () => !isAlive(pid), 5_000)
  }
}

/**
 * Opens a TCP connection to host:port and lets `talk` decide, through `done`, whether the server is
 * the one expected; no answer within `timeoutMs`, or a refused connection, is false.
 */
export function probeSocket(
  port: number,
  host: string,
  timeoutMs: number,
  talk: (socket: net.Socket, done: (ok: boolean) => void) => void,
): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('error', () => done(false))
    talk(socket, done)
  })
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function portAnswers(port: number, host = '127.0.0.1', timeoutMs = 500): Promise<boolean> {
  return probeSocket(port, host, timeoutMs, (socket, done) => socket.once('connect', () => done(true)))
}

/**
 * Stops the process a pid file names (if it is alive and ours), after `politely` asked it to (a
 * shutdown command); a stale pid file is just removed. `terminate` escalates to SIGKILL if needed.
 */
export async function stopFromPidFile(
  file: string,
  expect: string,
  log: () => void,
  politely: () => Promise<unknown> = async () => {},
): Promise<void> {
  const pid = livePidFromFile(file, expect)
  if (pid === undefined) {
    removeStalePidFile(file, expect)
    return
  }
  log()
  await politely()
  await terminate(pid)
}

/** GET a URL with a short timeout; resolves to the status code, or 0 when nothing answered. */
export async function httpStatus(url: string, timeoutMs = 1000): Promise<number> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
    await response.body?.cancel()
    return response.status
  } catch {
    return 0
  }
}

/** GET a URL's body; undefined when nothing answered 200 within `timeoutMs`. */
export async function httpText(url: string, timeoutMs = 1000): Promise<string | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
    return response.ok ? await response.text() : undefined
  } catch {
    return undefined
  }
}

const allPids = () =>
  readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)

/** PIDs of live processes whose command line starts with `prefix` (Linux /proc). */
export function processesStartingWith(prefix: string): number[] {
  return allPids().filter((pid) => commandLine(pid).startsWith(prefix))
}

/** PIDs of processes whose command line starts with `prefix` and that hold a file under `dir` open. */
export function processesHoldingFilesIn(prefix: string, dir: string): number[] {
  return processesStartingWith(prefix).filter((pid) => {
    try {
      return readdirSync(`/proc/${pid}/fd`).some((fd) => {
        try {
          return readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith(`${dir}/`)
        } catch {
          return false
        }
      })
    } catch {
      return false
    }
  })
}
