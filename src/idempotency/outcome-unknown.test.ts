import { randomUUID } from 'node:crypto'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  auditOf,
  buildTestApp,
  newAdmin,
  newCustomer,
  newSale,
  type TestUser,
} from '../../test/support/app.js'
import { loseNextCommit } from '../../test/support/lost-commit.js'
import { createGatePurchasePath } from '../redis-gate/gate-purchase-path.js'
import { createStockGate } from '../redis-gate/stock-gate.js'
import { idempotentRequest } from './idempotency.js'

interface OrderBody {
  id: string
  status: string
}

const purchase = (app: FastifyInstance, user: TestUser, saleId: number, key: string) =>
  app.inject({
    method: 'POST',
    url: `/api/sales/${saleId}/purchase`,
    headers: { ...user.headers, 'idempotency-key': key },
    payload: { quantity: 1 },
  })

async function ordersOf(app: FastifyInstance, user: TestUser): Promise<string[]> {
  const { rows } = await app.db.primary.query<{ id: string }>('SELECT id FROM orders WHERE user_id = $1', [
    user.id,
  ])
  return rows.map((row) => row.id)
}

function expectOutcomeUnknown(response: LightMyRequestResponse) {
  expect(response.statusCode).toBe(503)
  expect(response.json()).toMatchObject({ code: 'OUTCOME_UNKNOWN' })
  expect(response.headers['retry-after']).toBe('1')
}

function expectReplayOf(response: LightMyRequestResponse, orderId: string) {
  expect(response.statusCode).toBe(201)
  expect(response.headers['idempotent-replayed']).toBe('true')
  expect(response.json<OrderBody>().id).toBe(orderId)
}

// A keyed request whose first answer was 503 because the answer to its COMMIT was lost: the retry with
// the same key must get the order if it committed, and run afresh if it did not. The lost answers are
// made with test/support/lost-commit.ts (a real COMMIT on a real connection, cut at a chosen moment).
describe('Idempotency-Key after a lost COMMIT answer', () => {
  let observer: pg.Pool

  beforeAll(() => {
    observer = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 })
  })
  afterAll(async () => {
    await observer.end()
  })

  describe('on the redis-gate path', () => {
    // Two workers: what one learnt in memory (a sold-out sale) the other does not know.
    let worker: FastifyInstance
    let otherWorker: FastifyInstance
    let admin: TestUser

    beforeAll(async () => {
      const settings = { STOCK_STRATEGY: 'redis-gate', ORDER_BATCH_WAIT_MS: '50' }
      worker = await buildTestApp(settings)
      otherWorker = await buildTestApp(settings)
      admin = await newAdmin(worker)
    })
    afterAll(async () => {
      await Promise.all([worker.close(), otherWorker.close()])
    })

    /** A one-unit sale whose only unit went to `buyer` in a batch that committed, answered 503. */
    async function committedBehind503() {
      const saleId = await newSale(worker, admin, { units: 1 })
      const buyer = await newCustomer(worker)
      const key = randomUUID()
      const { cut } = loseNextCommit(worker.db.primary, observer, 'committed')
      const first = await purchase(worker, buyer, saleId, key)
      await cut
      expectOutcomeUnknown(first)
      const orders = await ordersOf(worker, buyer)
      expect(orders).toHaveLength(1)
      return { saleId, buyer, key, orderId: orders[0]! }
    }

    it('when a keyed purchase was answered 503 but its order committed, then the retry with the same key gets 201 with that order although the gate says sold out', async () => {
      const { saleId, buyer, key, orderId } = await committedBehind503()
      // The gate has nothing left for anyone, this buyer included (asked on the other worker, so that
      // this one does not answer from memory: the retry goes to the gate's side of the plugin).
      const late = await purchase(otherWorker, await newCustomer(otherWorker), saleId, randomUUID())
      expect(late.json()).toMatchObject({ code: 'SOLD_OUT' })

      const retry = await purchase(worker, buyer, saleId, key)
      const again = await purchase(worker, buyer, saleId, key)

      expectReplayOf(retry, orderId)
      // Stored back in Redis: the next retry is answered from there, the same way.
      expectReplayOf(again, orderId)
      expect(await ordersOf(worker, buyer)).toEqual([orderId])
    })

    it('when a worker that knows the sale is sold out gets the retry of a 503 whose order committed, then it replays the order instead of storing SOLD_OUT under the key', async () => {
      const { saleId, buyer, key, orderId } = await committedBehind503()
      const late = await purchase(otherWorker, await newCustomer(otherWorker), saleId, randomUUID())
      // The other worker now answers this sale from memory (SOLD_OUT), before any other work.
      expect(late.json()).toMatchObject({ code: 'SOLD_OUT' })

      const retry = await purchase(otherWorker, buyer, saleId, key)
      const onFirstWorker = await purchase(worker, buyer, saleId, key)

      expectReplayOf(retry, orderId)
      expectReplayOf(onFirstWorker, orderId)
      expect(await ordersOf(worker, buyer)).toEqual([orderId])
    })

    it('when a keyed purchase was answered 503 and nothing committed, then the retry with the same key runs afresh and gets a new order', async () => {
      // A limit of 2: until the reconciler releases it, the lost batch's token still counts for the buyer.
      const saleId = await newSale(worker, admin, { units: 5, perUserLimit: 2 })
      const buyer = await newCustomer(worker)
      const key = randomUUID()
      const { cut } = loseNextCommit(worker.db.primary, observer, 'rolled back')
      const first = await purchase(worker, buyer, saleId, key)
      await cut
      expectOutcomeUnknown(first)
      expect(await ordersOf(worker, buyer)).toEqual([])

      const retry = await purchase(worker, buyer, saleId, key)
      const again = await purchase(worker, buyer, saleId, key)

      expect(retry.statusCode).toBe(201)
      expect(retry.headers['idempotent-replayed']).toBeUndefined()
      const orderId = retry.json<OrderBody>().id
      expectReplayOf(again, orderId)
      expect(await ordersOf(worker, buyer)).toEqual([orderId])
    })

    it('when two retries of a key whose attempt ended 503 arrive at once, then exactly one order exists and the other retry is told the key is busy or replays it', async () => {
      const saleId = await newSale(worker, admin, { units: 5, perUserLimit: 3 })
      const buyer = await newCustomer(worker)
      const key = randomUUID()
      const { cut } = loseNextCommit(worker.db.primary, observer, 'rolled back')
      expectOutcomeUnknown(await purchase(worker, buyer, saleId, key))
      await cut

      const retries = await Promise.all([
        purchase(worker, buyer, saleId, key),
        purchase(otherWorker, buyer, saleId, key),
      ])

      const orders = await ordersOf(worker, buyer)
      expect(orders).toHaveLength(1)
      for (const retry of retries) {
        if (retry.statusCode === 201) expect(retry.json<OrderBody>().id).toBe(orders[0])
        else expect(retry.json()).toMatchObject({ code: 'IDEMPOTENCY_KEY_IN_USE' })
      }
      expect(retries.some((r) => r.statusCode === 201)).toBe(true)
    })

    it('when two purchases with one key both get past Redis and land in one batch, then Postgres still makes one order, the other buyer replays it, and its unit goes back', async () => {
      const saleId = await newSale(worker, admin, { units: 5, perUserLimit: 2 })
      const buyer = await newCustomer(worker)
      const gate = createStockGate(worker.redis, { tokenTtlMs: 30_000 })
      const path = createGatePurchasePath({
        db: worker.db,
        gate,
        config: worker.config,
        metrics: worker.metrics,
        log: { warn: () => {} },
      })
      const url = `/api/sales/${saleId}/purchase`
      const idempotency = idempotentRequest(buyer.id, randomUUID(), {
        method: 'POST',
        url,
        body: { quantity: 1 },
      })

      const answers = await Promise.allSettled([
        path.purchase({ userId: buyer.id, saleId, quantity: 1, idempotency }),
        path.purchase({ userId: buyer.id, saleId, quantity: 1, idempotency }),
      ])

      const orders = await ordersOf(worker, buyer)
      expect(orders).toHaveLength(1)
      const created = answers.find((a) => a.status === 'fulfilled') as PromiseFulfilledResult<OrderBody>
      const replayed = answers.find((a) => a.status === 'rejected') as PromiseRejectedResult
      expect(created.value.id).toBe(orders[0])
      expect(replayed.reason).toMatchObject({ storedStatus: 201, storedBody: { id: orders[0] } })
      expect(await auditOf(worker, admin, saleId)).toMatchObject({
        available: 4,
        gate: 4,
        inFlight: 0,
        drift: 0,
        violations: [],
      })
    })
  })
})
