import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import os from 'node:os'
import path from 'node:path'

// Decides whether the tests run against containers (testcontainers + docker-compose.yml) or the local stack,
// and finds the engine the containers paths talk to. It asks the Docker API's `GET /_ping` directly with
// node:http instead of importing testcontainers, whose own detection is slow when no engine exists: a missing
// socket answers in about a millisecond.

/** Where `npm run containers:setup` serves podman's Docker API. Asked only when containers are asked for. */
const PODMAN_SOCKET = '/run/podman/podman.sock'

/** STACK_RUNTIME: `local` or `containers` forces the choice; unset, a Docker engine that answers decides. */
type StackRuntime = 'local' | 'containers'

export interface ContainerRuntimeProbeOptions {
  /** Ask this Unix socket only (tests inject a fake engine); otherwise DOCKER_HOST or the usual sockets. */
  socketPath?: string
  /** Give up on each address after this long. */
  timeoutMs?: number
  /** Where DOCKER_HOST, DOCKER_TLS_VERIFY, XDG_RUNTIME_DIR and STACK_RUNTIME are read. */
  env?: NodeJS.ProcessEnv
}

type EngineAddress =
  { kind: 'unix'; socketPath: string } | { kind: 'tcp'; host: string; port: number; tls: boolean }

/**
 * True when a container engine answers `GET /_ping` with 200 "OK"; any error or timeout means false.
 * STACK_RUNTIME=local|containers forces the answer (false|true) without asking. Unset, only a Docker engine
 * counts (DOCKER_HOST or Docker's usual sockets): podman's socket, left running by containers:setup, does not
 * turn the default runs into container runs.
 */
export async function containerRuntimeAvailable(
  options: number | ContainerRuntimeProbeOptions = {},
): Promise<boolean> {
  const {
    socketPath,
    timeoutMs = 500,
    env = process.env,
  } = typeof options === 'number' ? { timeoutMs: options } : options

  const forced = requestedRuntime(env)
  if (forced === 'local') return false
  if (forced === 'containers') return true

  const addresses: EngineAddress[] = socketPath ? [{ kind: 'unix', socketPath }] : engineAddresses(env)
  for (const address of addresses) {
    if (await answersPing(address, timeoutMs, env)) return true
  }
  return false
}

/** STACK_RUNTIME as given: undefined when unset or empty; anything but local|containers is refused. */
function requestedRuntime(env: NodeJS.ProcessEnv = process.env): StackRuntime | undefined {
  const value = env.STACK_RUNTIME
  if (value === undefined || value === '') return undefined
  if (value === 'local' || value === 'containers') return value
  throw new Error(`STACK_RUNTIME=${JSON.stringify(value)}: expected "local" or "containers"`)
}

export interface ContainerEngine {
  /** The DOCKER_HOST value that reaches it (unix:// or tcp://). */
  dockerHost: string
  /** podman's Docker API: healthchecks only run when asked (see scripts/stack/compose.ts). */
  podman: boolean
}

/**
 * The engine the containers paths use: DOCKER_HOST when set, else Docker's usual sockets, else podman's
 * socket from `npm run containers:setup`. undefined when none answers.
 */
export async function findContainerEngine(
  env: NodeJS.ProcessEnv = process.env,
  timeoutMs = 2000,
): Promise<ContainerEngine | undefined> {
  const addresses = engineAddresses(env)
  if (!env.DOCKER_HOST) addresses.push({ kind: 'unix', socketPath: PODMAN_SOCKET })
  for (const address of addresses) {
    if (!(await answersPing(address, timeoutMs, env))) continue
    return {
      dockerHost:
        address.kind === 'unix' ? `unix://${address.socketPath}` : `tcp://${address.host}:${address.port}`,
      podman: await isPodman(address, env),
    }
  }
  return undefined
}

/**
 * Whether the engine is podman, from its `/version`. A podman service that has just started can take
 * seconds to answer it on a busy machine, and a wrong "no" would leave its healthchecks unrun (Compose
 * would then wait for ever), so the question is asked patiently, and podman's own socket counts as podman
 * when no answer comes.
 */
async function isPodman(address: EngineAddress, env: NodeJS.ProcessEnv): Promise<boolean> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const version = await ask(address, '/version', 10_000, env, 64 * 1024)
    if (version?.status === 200) return /"Podman Engine"/.test(version.body)
  }
  return address.kind === 'unix' && address.socketPath === PODMAN_SOCKET
}

/** DOCKER_HOST when set (unix:// or tcp://; other schemes such as ssh:// are not probed), else the usual sockets. */
function engineAddresses(env: NodeJS.ProcessEnv): EngineAddress[] {
  const dockerHost = env.DOCKER_HOST
  if (dockerHost) {
    if (dockerHost.startsWith('unix://'))
      return [{ kind: 'unix', socketPath: dockerHost.slice('unix://'.length) }]
    if (dockerHost.startsWith('tcp://')) {
      const tls =
        env.DOCKER_TLS_VERIFY !== undefined && env.DOCKER_TLS_VERIFY !== '' && env.DOCKER_TLS_VERIFY !== '0'
      const url = new URL(dockerHost.replace(/^tcp:/, tls ? 'https:' : 'http:'))
      const port = url.port ? Number(url.port) : tls ? 2376 : 2375
      return [{ kind: 'tcp', host: url.hostname.replace(/^\[|\]$/g, ''), port, tls }]
    }
    return []
  }
  const sockets = ['/var/run/docker.sock']
  // Rootless Docker, then Docker Desktop's per-user socket.
  if (env.XDG_RUNTIME_DIR) sockets.push(path.join(env.XDG_RUNTIME_DIR, 'docker.sock'))
  sockets.push(path.join(os.homedir(), '.docker', 'run', 'docker.sock'))
  return sockets.map((socketPath) => ({ kind: 'unix', socketPath }))
}

async function answersPing(
  address: EngineAddress,
  timeoutMs: number,
  env: NodeJS.ProcessEnv,
): Promise<boolean> {
  const answer = await ask(address, '/_ping', timeoutMs, env, 64)
  return answer?.status === 200 && answer.body.trim() === 'OK'
}

/** GET `path` from the engine; undefined on any error, on a timeout, or when the body outgrows maxBytes. */
function ask(
  address: EngineAddress,
  requestPath: string,
  timeoutMs: number,
  env: NodeJS.ProcessEnv,
  maxBytes: number,
): Promise<{ status: number | undefined; body: string } | undefined> {
  return new Promise((resolve) => {
    let settled = false
    const finish = (answer: { status: number | undefined; body: string } | undefined) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      request.destroy()
      resolve(answer)
    }

    const common = { method: 'GET', path: requestPath, agent: false } as const
    let request: http.ClientRequest
    try {
      request =
        address.kind === 'unix'
          ? http.request({ ...common, socketPath: address.socketPath })
          : address.tls
            ? https.request({ ...common, host: address.host, port: address.port, ...tlsFiles(env) })
            : http.request({ ...common, host: address.host, port: address.port })
    } catch {
      resolve(undefined)
      return
    }

    const timer = setTimeout(() => finish(undefined), timeoutMs)
    timer.unref()
    request.on('error', () => finish(undefined))
    request.on('response', (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        body += chunk
        if (body.length > maxBytes) finish(undefined)
      })
      response.on('end', () => finish({ status: response.statusCode, body }))
      response.on('error', () => finish(undefined))
    })
    request.end()
  })
}

/** The client certificate Docker's CLI uses with DOCKER_TLS_VERIFY: DOCKER_CERT_PATH or ~/.docker. */
function tlsFiles(env: NodeJS.ProcessEnv): { ca: Buffer; cert: Buffer; key: Buffer } | Record<string, never> {
  const dir = env.DOCKER_CERT_PATH || path.join(os.homedir(), '.docker')
  try {
    return {
      ca: readFileSync(path.join(dir, 'ca.pem')),
      cert: readFileSync(path.join(dir, 'cert.pem')),
      key: readFileSync(path.join(dir, 'key.pem')),
    }
  } catch {
    return {}
  }
}
