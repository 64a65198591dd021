import type { FastifyInstance } from 'fastify'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, newAdmin, newSale, settledAuditOf, type TestUser } from '../../test/support/app.js'
import { freePort } from '../../test/support/ports.js'
import { purchase } from '../../test/support/purchase.js'
import { createLoadTestUsers } from '../auth/load-test-users.js'
import { loadConfig } from '../config.js'
import { isDependencyUnavailable } from '../dependency-errors.js'
import { createStockGate } from '../purchase/gate/stock-gate.js'
import { createRedis, runIdIn, serverRunIdOf } from './client.js'

// A Redis primary, one replica and one Sentinel of this test's own (the stack's Redis stays as it is),
// with short timings, so a failover takes a few seconds. The data nodes require a password, given in
// REDIS_URL as the app gives it; Postgres is the test stack's.
const PASSWORD = 'sentinel-test-password'
const MASTER_NAME = 'stampede-test'

async function eventually<T>(what: string, attempt: () => Promise<T | null>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await attempt().catch(() => null)
    if (value !== null) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

describe('Redis through Sentinel', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stampede-sentinel-'))
  const started: ChildProcess[] = []
  const clients: Redis[] = []
  let ports: { primary: number; replica: number; sentinel: number }
  let primary: ChildProcess
  let app: FastifyInstance | undefined
  let admin: TestUser

  function redisServer(name: string, args: string[]): ChildProcess {
    const log = openSync(path.join(dir, `${name}.log`), 'a')
    const child = spawn('redis-server', args, { cwd: dir, stdio: ['ignore', log, log] })
    started.push(child)
    return child
  }

  /** A plain client of one server, for looking at it from outside. */
  function direct(port: number): Redis {
    const client = new Redis({ host: '127.0.0.1', port, password: PASSWORD, maxRetriesPerRequest: 1 })
    client.on('error', () => undefined)
    clients.push(client)
    return client
  }

  const runIdOf = async (client: Redis) => runIdIn(await client.info('server'))

  beforeAll(async () => {
    ports = { primary: await freePort(), replica: await freePort(), sentinel: await freePort() }
    const data = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]
    const auth = ['--requirepass', PASSWORD, '--masterauth', PASSWORD]
    primary = redisServer('primary', ['--port', String(ports.primary), ...data, ...auth])
    redisServer('replica', [
      '--port',
      String(ports.replica),
      ...data,
      ...auth,
      '--replicaof',
      '127.0.0.1',
      String(ports.primary),
    ])
    await eventually('the replica to sync', async () =>
      (await direct(ports.replica).info('replication')).includes('master_link_status:up') ? true : null,
    )
    // Sentinel rewrites its file (what it learnt of replicas and other sentinels), so it gets its own.
    const sentinelConf = path.join(dir, 'sentinel.conf')
    writeFileSync(
      sentinelConf,
      [
        `port ${ports.sentinel}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${ports.primary} 1`,
        `sentinel auth-pass ${MASTER_NAME} ${PASSWORD}`,
        `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
        `sentinel failover-timeout ${MASTER_NAME} 5000`,
        '',
      ].join('\n'),
    )
    redisServer('sentinel', [sentinelConf, '--sentinel'])
    const sentinel = new Redis({ host: '127.0.0.1', port: ports.sentinel, maxRetriesPerRequest: 1 })
    sentinel.on('error', () => undefined)
    clients.push(sentinel)
    await eventually('the sentinel to know the replica', async () => {
      const replicas = (await sentinel.call('SENTINEL', 'REPLICAS', MASTER_NAME)) as string[][]
      return replicas.some((fields) => fields.includes(String(ports.replica))) ? true : null
    })

    app = await buildTestApp({
      STOCK_STRATEGY: 'redis-gate',
      // The host and port are not used through sentinels; the password is.
      REDIS_URL: `redis://:${PASSWORD}@127.0.0.1:1`,
      REDIS_SENTINELS: `127.0.0.1:${ports.sentinel}`,
      REDIS_SENTINEL_NAME: MASTER_NAME,
    })
    admin = await newAdmin(app)
  })

  afterAll(async () => {
    await app?.close()
    for (const client of clients) client.disconnect()
    // Every server this test started, by its PID, whatever happened above.
    for (const child of started) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
    await Promise.all(
      started.map((child) =>
        child.exitCode === null && child.signalCode === null
          ? new Promise((resolve) => child.once('exit', resolve))
          : null,
      ),
    )
    rmSync(dir, { recursive: true, force: true })
  })

  it('when a replica answers a write with READONLY, or a primary without enough replicas with NOREPLICAS, then the error counts as a dependency outage and a request gets 503 with Retry-After', async () => {
    const config = loadConfig({
      ...process.env,
      REDIS_URL: `redis://:${PASSWORD}@127.0.0.1:${ports.replica}`,
    })
    const replica = createRedis(config)
    replica.on('error', () => undefined)
    clients.push(replica)
    await replica.connect()
    const gate = createStockGate(replica, { tokenTtlMs: 30_000 })
    const readonly = await gate
      .build(1, {
        available: 1,
        startsAt: new Date(),
        endsAt: new Date(),
        perUserLimit: 1,
        version: 1,
        usersHolding: [],
      })
      .catch((err: unknown) => err)
    expect(String(readonly)).toMatch(/^ReplyError: READONLY/)
    expect(isDependencyUnavailable(readonly)).toBe(true)

    const onPrimary = direct(ports.primary)
    await onPrimary.config('SET', 'min-replicas-to-write', '2')
    try {
      const noReplicas = await onPrimary.set('sentinel-test:x', '1').catch((err: unknown) => err)
      expect(String(noReplicas)).toMatch(/^ReplyError: NOREPLICAS/)
      expect(isDependencyUnavailable(noReplicas)).toBe(true)
    } finally {
      await onPrimary.config('SET', 'min-replicas-to-write', '0')
    }

    // A whole app pointed at the replica: signing up writes to Redis (the signup rate limit).
    const onReplica = await buildTestApp({ REDIS_URL: `redis://:${PASSWORD}@127.0.0.1:${ports.replica}` })
    try {
      const answer = await onReplica.inject({ method: 'POST', url: '/api/auth/guest' })
      expect(answer.statusCode).toBe(503)
      expect(answer.json<{ code: string }>().code).toBe('DEPENDENCY_UNAVAILABLE')
      expect(answer.headers['retry-after']).toBeDefined()
    } finally {
      await onReplica.close()
    }
  })

  it('when a connection attempt is cancelled while it asks the sentinel (what the failover detector of a dead connection does when +switch-master arrives), then the client connects again instead of ending', async () => {
    const config = loadConfig({
      ...process.env,
      REDIS_URL: `redis://:${PASSWORD}@127.0.0.1:1`,
      REDIS_SENTINELS: `127.0.0.1:${ports.sentinel}`,
      REDIS_SENTINEL_NAME: MASTER_NAME,
    })
    const client = createRedis(config)
    client.on('error', () => undefined)
    clients.push(client)
    const ended = new Promise((resolve) => client.once('end', resolve))
    void client.connect().catch(() => undefined)
    // The attempt is under way (the sentinel is being asked); cancel it as FailoverDetector does.
    ;(client as unknown as { connector: { disconnect(): void } }).connector.disconnect()
    await ended
    await eventually(
      'the client to connect again',
      async () => (client.status === 'ready' ? true : null),
      10_000,
    )
    expect(await client.ping()).toBe('PONG')
    // A client closed on purpose stays closed.
    const closed = new Promise((resolve) => client.once('end', resolve))
    client.disconnect()
    await closed
    await sleep(300)
    expect(client.status).toBe('end')
  })

  it('when the primary is killed, then the client reaches the promoted replica under its run id, and the next purchase rebuilds the gate from Postgres with drift 0', async () => {
    const web = app!
    const oldRunId = await runIdOf(direct(ports.primary))
    const replicaRunId = await runIdOf(direct(ports.replica))
    expect(oldRunId).not.toBeNull()
    expect(replicaRunId).not.toBe(oldRunId)
    // Connected through the sentinel to the primary, and a gate admits there.
    expect(await serverRunIdOf(web.redis).known()).toBe(oldRunId)
    const saleId = await newSale(web, admin, { units: 5 })
    const buyers = await createLoadTestUsers(web.db.primary, web.config, 3)
    expect((await purchase(web, buyers[0]!, saleId)).statusCode).toBe(201)
    const gateKey = `sale:{${saleId}}:gate`
    expect(await web.redis.hget(gateKey, 'run_id')).toBe(oldRunId)
    // The replica has the gate too, still fenced to the old primary: what a promoted replica starts with.
    await eventually('the gate to reach the replica', async () =>
      (await direct(ports.replica).hget(gateKey, 'available')) === '4' ? true : null,
    )

    primary.kill('SIGKILL')

    // 503s while the sentinel notices and promotes the replica; then the purchase goes through.
    const answer = await eventually('a purchase after the failover', async () => {
      const response = await purchase(web, buyers[1]!, saleId)
      if (response.statusCode === 503) return null
      return response
    })
    expect(answer.statusCode).toBe(201)
    expect(serverRunIdOf(web.redis).now()).toBe(replicaRunId)
    const promoted = direct(ports.replica)
    expect(await promoted.info('replication')).toContain('role:master')
    // Rebuilt from Postgres under the new server's run id, not trusted as replicated.
    expect(await promoted.hget(gateKey, 'run_id')).toBe(replicaRunId)
    expect(await settledAuditOf(web, admin, saleId)).toMatchObject({
      available: 3,
      gate: 3,
      drift: 0,
      violations: [],
    })
    // A Sentinel whose first failover attempt fails tries again only after twice failover-timeout: give
    // the failover more than the suite's default 30 s on a loaded machine.
  }, 60_000)
})
