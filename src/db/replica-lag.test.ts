import type { FastifyInstance } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { existingPostgresRoot, postgresPaths, stackPaths } from '../../scripts/stack/paths.js'
import { startService, stopService, type StackOptions } from '../../scripts/stack/stack.js'
import {
  buildTestApp,
  fillCart,
  newAdmin,
  newCustomer,
  newProduct,
  type TestUser,
} from '../../test/support/app.js'
import { testStack } from '../../test/support/stack-env.js'
import type { Metrics } from '../metrics.js'

// Without the global setup's local stack (e.g. containers), the tests that stop the replica or delay
// its replay are skipped; the others need only a primary, a replica and Redis.
const localStack: StackOptions | undefined = testStack()?.options
const runsReplica = Boolean(localStack?.services.replica)

async function queries(metrics: Metrics, pool: 'primary' | 'replica'): Promise<number> {
  const { values } = await metrics.dbQueries.get()
  return values.find((v) => v.labels.pool === pool)?.value ?? 0
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await condition()) return true
    await sleep(50)
  }
  return condition()
}

describe('read/write split with a lag-aware replica', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp()
    admin = await newAdmin(app)
  })

  afterAll(async () => {
    await app.close()
  })

  it('when the replica is healthy, then catalog reads use it, its lag is measured and readiness says reads come from it', async () => {
    expect(await until(() => app.replicaLag.state().readsFrom === 'replica', 5000)).toBe(true)
    const before = await queries(app.metrics, 'replica')

    const page = await app.inject({ url: '/api/products?limit=1' })
    const replicaQueries = (await queries(app.metrics, 'replica')) - before
    const ready = await app.inject({ url: '/health/ready' })

    expect(page.statusCode).toBe(200)
    expect(replicaQueries).toBe(1)
    const lag = (await app.metrics.replicaLagSeconds.get()).values[0]?.value
    expect(lag).toBeGreaterThanOrEqual(0)
    expect(lag).toBeLessThan(1)
    expect(ready.json()).toMatchObject({ status: 'ready', readsFrom: 'replica', degraded: [] })
  })

  it('when a customer checks out, then their new order is visible at once: their orders are read from the primary', async () => {
    const id = await newProduct(app, admin, { stock: 5 })
    const customer = await newCustomer(app)
    await fillCart(app, customer, [{ productId: id, quantity: 1 }])
    const before = await queries(app.metrics, 'replica')

    const order = await app.inject({ method: 'POST', url: '/api/checkout', headers: customer.headers })
    const { id: orderId } = order.json<{ id: string }>()
    const fetched = await app.inject({ url: `/api/orders/${orderId}`, headers: customer.headers })
    const listed = await app.inject({ url: '/api/orders', headers: customer.headers })

    expect(order.statusCode).toBe(201)
    expect(fetched.statusCode).toBe(200)
    expect(JSON.stringify(listed.json())).toContain(orderId)
    expect((await queries(app.metrics, 'replica')) - before).toBe(0)
  })

  it('when the replica does not answer, then catalog reads come from the primary and readiness names the degradation', async () => {
    const noReplica = await buildTestApp({
      DATABASE_REPLICA_URL: 'postgres://stampede:stampede@127.0.0.1:1/stampede',
    })
    try {
      const page = await noReplica.inject({ url: '/api/products?limit=1' })
      const product = await noReplica.inject({
        url: `/api/products/${await newProduct(app, admin, { stock: 1 })}`,
      })
      const ready = await noReplica.inject({ url: '/health/ready' })

      expect(page.statusCode).toBe(200)
      expect(product.statusCode).toBe(200)
      expect(await queries(noReplica.metrics, 'primary')).toBeGreaterThan(0)
      expect(noReplica.replicaLag.state()).toMatchObject({ replicaUp: false, readsFrom: 'primary' })
      expect(ready.statusCode).toBe(503)
      expect(ready.json()).toMatchObject({
        code: 'NOT_READY',
        checks: { primary: 'up', replica: 'down', redis: 'up' },
        readsFrom: 'primary',
        degraded: ['replica'],
      })
    } finally {
      await noReplica.close()
    }
  })

  it.runIf(runsReplica)(
    'when the replica is stopped and started again, then reads move to the primary without errors and come back (local stack only)',
    async () => {
      const options = localStack!
      await stopService(options, 'replica')
      try {
        expect(await until(() => app.replicaLag.state().readsFrom === 'primary', 3000)).toBe(true)
        const page = await app.inject({ url: '/api/products?limit=1' })
        const ready = await app.inject({ url: '/health/ready' })

        expect(page.statusCode).toBe(200)
        expect(ready.statusCode).toBe(503)
        expect(ready.json()).toMatchObject({ checks: { replica: 'down' }, readsFrom: 'primary' })
      } finally {
        await startService(options, 'replica')
      }
      expect(await until(() => app.replicaLag.state().readsFrom === 'replica', 10_000)).toBe(true)
    },
    60_000,
  )

  it.runIf(runsReplica)(
    'when the replica stops between two lag probes, then the catalog read that finds it gone is answered from the primary (local stack only)',
    async () => {
      const options = localStack!
      expect(await until(() => app.replicaLag.state().readsFrom === 'replica', 5000)).toBe(true)
      // No probe runs meanwhile: the read itself must notice that the replica is gone.
      app.replicaLag.stop()
      await stopService(options, 'replica')
      try {
        const before = await queries(app.metrics, 'primary')
        const page = await app.inject({ url: '/api/products?limit=1' })

        expect(page.statusCode).toBe(200)
        expect(await queries(app.metrics, 'primary')).toBeGreaterThan(before)
        expect(app.replicaLag.state().readsFrom).toBe('primary')
      } finally {
        await startService(options, 'replica')
        await app.replicaLag.start()
      }
      expect(await until(() => app.replicaLag.state().readsFrom === 'replica', 10_000)).toBe(true)
    },
    60_000,
  )

  it.runIf(runsReplica)(
    'when the replica replays 5 s late, then reads move to the primary and a price change shows at once (local stack only)',
    async () => {
      const options = localStack!
      const root = existingPostgresRoot(stackPaths(options.dir))!
      // recovery_min_apply_delay needs a superuser: the stack's own, over the replica's socket.
      const superuser = new pg.Client({
        host: postgresPaths(root).sockets,
        port: options.ports.replica,
        user: 'postgres',
        database: 'postgres',
      })
      await superuser.connect()
      const id = await newProduct(app, admin, { stock: 1, priceCents: 1000 })
      try {
        await superuser.query(`ALTER SYSTEM SET recovery_min_apply_delay = '5s'`)
        await superuser.query('SELECT pg_reload_conf()')
        await sleep(100)
        const changed = await app.inject({
          method: 'PUT',
          url: `/api/admin/products/${id}/price`,
          headers: admin.headers,
          payload: { priceCents: 1500 },
        })
        expect(changed.statusCode).toBe(200)

        // The write waits on the replica; the public read must not show the old price meanwhile.
        expect((await app.inject({ url: `/api/products/${id}` })).json()).toMatchObject({ priceCents: 1500 })
        expect(await until(() => app.replicaLag.state().readsFrom === 'primary', 3000)).toBe(true)
        expect(app.replicaLag.state().lagSeconds).toBeGreaterThan(1)
        const ready = await app.inject({ url: '/health/ready' })
        expect(ready.statusCode).toBe(200)
        expect(ready.json()).toMatchObject({ readsFrom: 'primary', degraded: ['replica_lag'] })
      } finally {
        await superuser.query('ALTER SYSTEM RESET recovery_min_apply_delay')
        await superuser.query('SELECT pg_reload_conf()')
        await superuser.end()
      }
      expect(await until(() => app.replicaLag.state().readsFrom === 'replica', 10_000)).toBe(true)
    },
    60_000,
  )
})
