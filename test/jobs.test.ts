import type { FastifyInstance } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../src/config.js'
import { buildJobs } from '../src/jobs-app.js'
import type { Log } from '../src/log.js'
import { buildTestApp, fillCart, newAdmin, newCustomer, newProduct, stockOf } from './support/app.js'

const silent: Log = { info: () => undefined, warn: () => undefined, error: () => undefined }

describe('jobs process', () => {
  let app: FastifyInstance

  beforeAll(async () => {
    app = await buildTestApp({ RESERVATION_TTL_SECONDS: '1' })
  })
  afterAll(async () => {
    await app.close()
  })

  it('when the jobs are built, started, ticked once and stopped, then a due reservation is expired and released, and stop returns', async () => {
    const admin = await newAdmin(app)
    const productId = await newProduct(app, admin, { stock: 3 })
    const buyer = await newCustomer(app)
    await fillCart(app, buyer, [{ productId, quantity: 2 }])
    const order = (await app.inject({ method: 'POST', url: '/api/checkout', headers: buyer.headers })).json<{
      id: string
    }>()
    expect(await stockOf(app, productId)).toEqual({ onHand: 3, available: 1, reserved: 2, sold: 0 })

    // Port 0: the test stack's own jobs process may hold the configured one.
    const jobs = await buildJobs(loadConfig(process.env), { log: silent, metricsPort: 0 })
    try {
      await jobs.start()
      await sleep(1100)
      const done = await jobs.tick()
      expect(Object.keys(done)).toEqual(['expiry sweep', 'guest expiry', 'waiting rooms', 'reconcile'])
    } finally {
      await jobs.stop()
    }

    // Whichever sweeper got there first (the stack's own jobs process may too), it happened once.
    const answer = await app.inject({ url: `/api/orders/${order.id}`, headers: buyer.headers })
    expect(answer.json()).toMatchObject({ id: order.id, status: 'expired' })
    expect(await stockOf(app, productId)).toEqual({ onHand: 3, available: 3, reserved: 0, sold: 0 })
  })
})
