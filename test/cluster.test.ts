import autocannon from 'autocannon'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ensureNginx, nginxLimitsFromEnv, stopNginx, type NginxSetup } from '../scripts/stack/nginx.js'
import { REPO_ROOT } from '../scripts/stack/paths.js'
import { localStackOptions, testStack } from './support/stack-env.js'

// The cluster as it runs in production: PM2 workers behind the committed nginx.conf, in the test stack.

const run = promisify(execFile)
const stack = testStack()
const hasCluster = stack.runtime === 'local' && stack.nginxUrl !== undefined

async function pm2(...args: string[]): Promise<string> {
  const options = localStackOptions()
  const { stdout } = await run(path.join(REPO_ROOT, 'node_modules/.bin/pm2'), args, {
    env: { ...process.env, PM2_HOME: path.join(options.dir, 'pm2') },
  })
  return stdout
}

interface Pm2Process {
  name: string
  pid: number
  pm2_env: { status: string; restart_time: number; NODE_APP_INSTANCE?: number }
}
const apiWorkers = async () =>
  (JSON.parse((await pm2('jlist')).replace(/^[^[]*/, '')) as Pm2Process[]).filter((p) => p.name === 'api')

async function allOnline(count: number, timeoutMs: number): Promise<Pm2Process[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const workers = await apiWorkers()
    const online = workers.filter((w) => w.pm2_env.status === 'online')
    if (online.length === count || Date.now() > deadline) return workers
    await sleep(200)
  }
}

/** GET a product and create a guest: one idempotent request and one that nginx must never retry. */
function load(durationSeconds: number) {
  return autocannon({
    url: stack.nginxUrl!,
    connections: 20,
    duration: durationSeconds,
    requests: [
      { method: 'GET', path: '/api/products/1' },
      { method: 'POST', path: '/api/auth/guest' },
    ],
  })
}

describe.runIf(hasCluster)('the PM2 cluster behind nginx (local stack only: it reloads PM2)', () => {
  let workers: number

  beforeAll(async () => {
    workers = (await apiWorkers()).length
  })

  it('when requests arrive through nginx, they are spread over every worker', async () => {
    const seen = new Set<string>()
    for (let i = 0; i < 40; i++) {
      const response = await fetch(`${stack.nginxUrl}/api/products/1`)
      seen.add(response.headers.get('x-worker') ?? 'none')
    }
    expect(workers).toBeGreaterThanOrEqual(2)
    expect(seen.size).toBe(workers)
  })

  it('when `pm2 reload api` runs during a 10-second load, no request fails and none is answered non-2xx', async () => {
    const before = (await apiWorkers()).map((w) => w.pid)
    const running = load(10)
    await sleep(3000)
    await pm2('reload', 'api')
    const result = await running

    const after = await allOnline(workers, 10_000)
    expect(after.map((w) => w.pid).some((pid) => before.includes(pid))).toBe(false)
    console.log(
      `reload under load: ${result.requests.total} requests, ${result.non2xx} non-2xx, ${result.errors} errors, ${result.timeouts} timeouts`,
    )
    expect(result.requests.total).toBeGreaterThan(100)
    expect({ non2xx: result.non2xx, errors: result.errors, timeouts: result.timeouts }).toEqual({
      non2xx: 0,
      errors: 0,
      timeouts: 0,
    })
  })

  it(
    'when one worker is killed (SIGKILL) under load, PM2 restarts it and the others keep serving',
    { timeout: 60_000 },
    async () => {
      const [victim] = await apiWorkers()
      const running = load(6)
      await sleep(1500)
      process.kill(victim!.pid, 'SIGKILL')
      // Right after the kill, the survivors answer. (A connection the PM2 master had already handed to the
      // dead worker gets no answer: nginx gives up on it after proxy_read_timeout and retries the GET.)
      const during = await Promise.all(
        Array.from({ length: 20 }, () => fetch(`${stack.nginxUrl}/api/products/1`)),
      )
      const result = await running

      expect(during.every((response) => response.status === 200)).toBe(true)
      expect(result['2xx']).toBeGreaterThan(100)
      const after = await allOnline(workers, 15_000)
      expect(after.filter((w) => w.pm2_env.status === 'online')).toHaveLength(workers)
      expect(after.map((w) => w.pid)).not.toContain(victim!.pid)
      console.log(
        `SIGKILL under load: ${result['2xx']} 2xx, ${result.non2xx} non-2xx, ${result.errors} errors`,
      )
    },
  )
})

// nginx's retry rule, tested on the committed nginx.conf with two upstreams that die mid-request the way a
// crashed worker does (the socket closes with no answer): a GET may be retried on the next upstream; a
// POST never is, since the first upstream may already have acted on it (sold the unit).
describe('nginx never replays a POST on another upstream', () => {
  const hits: string[] = []
  const upstreams: Server[] = []
  let setup: NginxSetup
  let dir: string

  beforeAll(async () => {
    for (let n = 0; n < 2; n++) {
      const server = createServer((request, response) => {
        hits.push(`${n} ${request.method}`)
        if (n === 0) request.socket.destroy()
        else response.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
      })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      upstreams.push(server)
    }
    dir = mkdtempSync(path.join(os.tmpdir(), 'stampede-nginx-retry-'))
    const port = (s: Server) => (s.address() as { port: number }).port
    setup = {
      stackDir: dir,
      port: 28390,
      adminPort: 28391,
      // The dying upstream first: least_conn starts with it.
      upstreams: upstreams.map((s) => `127.0.0.1:${port(s)}`),
      jobsMetrics: '127.0.0.1:9',
      limits: nginxLimitsFromEnv({}),
    }
    await ensureNginx(setup, () => {})
  })

  afterAll(async () => {
    if (setup) await stopNginx(setup, () => {})
    for (const server of upstreams) server.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('when the upstream dies during a POST, the client gets an error and no other upstream sees the POST', async () => {
    // least_conn with equal load begins with the first server; send until the dying one got a POST.
    let answer = 200
    for (let i = 0; i < 10 && !hits.includes('0 POST'); i++) {
      hits.length = 0
      answer = (await fetch(`http://127.0.0.1:${setup.port}/api/auth/guest`, { method: 'POST' })).status
    }
    expect(hits).toEqual(['0 POST'])
    expect(answer).toBeGreaterThanOrEqual(500)
  })

  it('when the upstream dies during a GET, nginx retries it on the next upstream', async () => {
    let answer = 0
    for (let i = 0; i < 10 && !hits.includes('0 GET'); i++) {
      hits.length = 0
      answer = (await fetch(`http://127.0.0.1:${setup.port}/api/products/1`)).status
    }
    expect(hits).toEqual(['0 GET', '1 GET'])
    expect(answer).toBe(200)
  })
})
