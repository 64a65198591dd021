import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import os from 'node:os'
import path from 'node:path'

// Decides whether the tests run against containers (testcontainers + docker-compose.yml) or the local stack.
// It asks the Docker engine's `GET /_ping` directly with node:http instead of importing testcontainers, whose
// own detection is slow when no engine exists: a missing socket answers in about a millisecond.

export interface ContainerRuntimeProbeOptions {
  /** Ask this Unix socket only (tests inject a fake engine); otherwise DOCKER_HOST or the usual sockets. */
  socketPath?: string
  /** Give up on each address after this long. */
  timeoutMs?: number
  /** Where DOCKER_HOST, DOCKER_TLS_VERIFY, XDG_RUNTIME_DIR and STAMPEDE_TEST_RUNTIME are read. */
  env?: NodeJS.ProcessEnv
}

type EngineAddress =
  { kind: 'unix'; socketPath: string } | { kind: 'tcp'; host: string; port: number; tls: boolean }

/**
 * True when a container engine answers `GET /_ping` with 200 "OK"; any error or timeout means false.
 * STAMPEDE_TEST_RUNTIME=local|containers forces the answer (false|true) without asking.
 */
export async function containerRuntimeAvailable(
  options: number | ContainerRuntimeProbeOptions = {},
): Promise<boolean> {
  const {
    socketPath,
    timeoutMs = 500,
    env = process.env,
  } = typeof options === 'number' ? { timeoutMs: options } : options

  const forced = env.STAMPEDE_TEST_RUNTIME
  if (forced === 'local') return false
  if (forced === 'containers') return true
  if (forced !== undefined && forced !== '') {
    throw new Error(`STAMPEDE_TEST_RUNTIME=${JSON.stringify(forced)}: expected "local" or "containers"`)
  }

  const addresses: EngineAddress[] = socketPath ? [{ kind: 'unix', socketPath }] : engineAddresses(env)
  for (const address of addresses) {
    if (await answersPing(address, timeoutMs, env)) return true
  }
  return false
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

function answersPing(address: EngineAddress, timeoutMs: number, env: NodeJS.ProcessEnv): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false
    const finish = (answer: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      request.destroy()
      resolve(answer)
    }

    const common = { method: 'GET', path: '/_ping', agent: false } as const
    let request: http.ClientRequest
    try {
      request =
        address.kind === 'unix'
          ? http.request({ ...common, socketPath: address.socketPath })
          : address.tls
            ? https.request({ ...common, host: address.host, port: address.port, ...tlsFiles(env) })
            : http.request({ ...common, host: address.host, port: address.port })
    } catch {
      resolve(false)
      return
    }

    const timer = setTimeout(() => finish(false), timeoutMs)
    timer.unref()
    request.on('error', () => finish(false))
    request.on('response', (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        body += chunk
        if (body.length > 64) finish(false)
      })
      response.on('end', () => finish(response.statusCode === 200 && body.trim() === 'OK'))
      response.on('error', () => finish(false))
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
