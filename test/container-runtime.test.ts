import { mkdtempSync, rmSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { containerRuntimeAvailable, findContainerEngine } from '../scripts/stack/container-runtime.js'

// A fake Docker engine: answers `GET /_ping` the way the test asks, over a Unix socket or TCP, and
// `GET /version` with the components it is given.
type PingAnswer = { status: number; body: string; components?: string[]; versionAfterMs?: number } | 'hang'

let dir: string
const servers: http.Server[] = []

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'stampede-runtime-'))
})

afterEach(async () => {
  await Promise.all(
    servers.splice(0).map(
      (server) =>
        new Promise<void>((resolve) => {
          server.closeAllConnections()
          server.close(() => resolve())
        }),
    ),
  )
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

function fakeEngine(answer: PingAnswer): http.Server {
  const server = http.createServer((request, response) => {
    if (answer === 'hang') return
    if (request.url === '/version' && answer.components) {
      const body = JSON.stringify({ Components: answer.components.map((Name) => ({ Name })) })
      const send = () => response.writeHead(200, { 'content-type': 'application/json' }).end(body)
      if (answer.versionAfterMs) setTimeout(send, answer.versionAfterMs)
      else send()
      return
    }
    if (request.url !== '/_ping') {
      response.writeHead(404).end('page not found')
      return
    }
    response.writeHead(answer.status, { 'content-type': 'text/plain' }).end(answer.body)
  })
  servers.push(server)
  return server
}

async function fakeEngineOnSocket(name: string, answer: PingAnswer): Promise<string> {
  const socketPath = path.join(dir, `${name}.sock`)
  const server = fakeEngine(answer)
  await new Promise<void>((resolve) => server.listen(socketPath, resolve))
  return socketPath
}

async function fakeEngineOnTcp(answer: PingAnswer): Promise<number> {
  const server = fakeEngine(answer)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

describe('containerRuntimeAvailable', () => {
  it('when the socket does not exist, then it answers false', async () => {
    const socketPath = path.join(dir, 'missing.sock')
    expect(await containerRuntimeAvailable({ socketPath, timeoutMs: 500, env: {} })).toBe(false)
  })

  it('when the engine answers 200 OK on /_ping, then it answers true', async () => {
    const socketPath = await fakeEngineOnSocket('ok', { status: 200, body: 'OK' })
    expect(await containerRuntimeAvailable({ socketPath, env: {} })).toBe(true)
  })

  it('when the engine answers 500, then it answers false', async () => {
    const socketPath = await fakeEngineOnSocket('broken', { status: 500, body: 'OK' })
    expect(await containerRuntimeAvailable({ socketPath, env: {} })).toBe(false)
  })

  it('when something answers 200 with another body, then it answers false', async () => {
    const socketPath = await fakeEngineOnSocket('impostor', { status: 200, body: '<html>hello</html>' })
    expect(await containerRuntimeAvailable({ socketPath, env: {} })).toBe(false)
  })

  it('when the engine never answers, then it answers false after the timeout', async () => {
    const socketPath = await fakeEngineOnSocket('hang', 'hang')
    expect(await containerRuntimeAvailable({ socketPath, timeoutMs: 50, env: {} })).toBe(false)
  })

  it('when DOCKER_HOST names a unix socket, then that socket is asked', async () => {
    const socketPath = await fakeEngineOnSocket('docker-host', { status: 200, body: 'OK' })
    expect(await containerRuntimeAvailable({ env: { DOCKER_HOST: `unix://${socketPath}` } })).toBe(true)
  })

  it('when DOCKER_HOST names a tcp address, then that address is asked', async () => {
    const port = await fakeEngineOnTcp({ status: 200, body: 'OK' })
    expect(await containerRuntimeAvailable({ env: { DOCKER_HOST: `tcp://127.0.0.1:${port}` } })).toBe(true)
  })

  it('when DOCKER_HOST uses a scheme it cannot probe, then it answers false', async () => {
    expect(await containerRuntimeAvailable({ env: { DOCKER_HOST: 'ssh://user@example.invalid' } })).toBe(
      false,
    )
  })

  it('when STACK_RUNTIME=local, then it answers false even though an engine answers', async () => {
    const socketPath = await fakeEngineOnSocket('forced-local', { status: 200, body: 'OK' })
    const env = { STACK_RUNTIME: 'local' }
    expect(await containerRuntimeAvailable({ socketPath, env })).toBe(false)
  })

  it('when STACK_RUNTIME=containers, then it answers true without asking', async () => {
    const socketPath = path.join(dir, 'missing.sock')
    const env = { STACK_RUNTIME: 'containers' }
    expect(await containerRuntimeAvailable({ socketPath, env })).toBe(true)
  })

  it('when STACK_RUNTIME has another value, then it rejects naming the variable', async () => {
    const env = { STACK_RUNTIME: 'docker' }
    await expect(containerRuntimeAvailable({ env })).rejects.toThrow(/STACK_RUNTIME/)
  })
})

describe('findContainerEngine', () => {
  it('when DOCKER_HOST names a podman socket that answers, then it returns it and says podman', async () => {
    const socketPath = await fakeEngineOnSocket('podman', {
      status: 200,
      body: 'OK',
      components: ['Podman Engine', 'Conmon'],
    })
    expect(await findContainerEngine({ DOCKER_HOST: `unix://${socketPath}` })).toEqual({
      dockerHost: `unix://${socketPath}`,
      podman: true,
    })
  })

  it('when DOCKER_HOST names a Docker engine that answers, then it returns it and says not podman', async () => {
    const port = await fakeEngineOnTcp({ status: 200, body: 'OK', components: ['Engine', 'containerd'] })
    expect(await findContainerEngine({ DOCKER_HOST: `tcp://127.0.0.1:${port}` })).toEqual({
      dockerHost: `tcp://127.0.0.1:${port}`,
      podman: false,
    })
  })

  it('when a podman that has just started takes seconds to answer /version, then it still says podman', async () => {
    // A hasty "not podman" leaves podman's healthchecks unrun, and Compose then waits for ever.
    const socketPath = await fakeEngineOnSocket('slow-podman', {
      status: 200,
      body: 'OK',
      components: ['Podman Engine'],
      versionAfterMs: 2500,
    })
    expect(await findContainerEngine({ DOCKER_HOST: `unix://${socketPath}` })).toEqual({
      dockerHost: `unix://${socketPath}`,
      podman: true,
    })
  })

  it('when DOCKER_HOST names a socket nobody listens on, then it finds no engine', async () => {
    const env = { DOCKER_HOST: `unix://${path.join(dir, 'nobody.sock')}` }
    expect(await findContainerEngine(env, 200)).toBeUndefined()
  })
})
