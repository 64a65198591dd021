import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  auditOf,
  settledAuditOf,
  buildTestApp,
  fillCart,
  newAdmin,
  newCustomer,
  newProduct,
  newSale,
  type TestUser,
} from '../../test/support/app.js'
import { isCommit, loseNextCommit } from '../../test/support/lost-commit.js'
import { createGatePurchasePath } from '../purchase/gate/gate-purchase-path.js'
import { createStockGate, type StockGate } from '../purchase/gate/stock-gate.js'
import { createPostgresPurchasePath } from '../purchase/postgres/postgres-purchase-path.js'
import { WRITE_SALE_ORDERS_STATEMENT } from '../purchase/sale-orders.repository.js'
import { retryPolicyOf } from '../stock/stock-retry.js'
import { rowStrategy } from '../stock/stock.repository.js'
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
/** A gate reservation token for one unit, as gate-purchase.lua hands it to an admitted buyer. */
async function admittedToken(gate: StockGate, saleId: number, userId: string): Promise<string> {
  const admission = await gate.admit(saleId, userId, 1)
  if (admission.outcome !== 'admitted') throw new Error(`not admitted: ${admission.outcome}`)
  return admission.token
}

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

      // Both admitted by the gate without their key (as if Redis had forgotten it between them).
      const tokens = await Promise.all([1, 2].map(() => admittedToken(gate, saleId, buyer.id)))
      const answers = await Promise.allSettled(
        tokens.map((token) => path.purchase({ userId: buyer.id, saleId, quantity: 1, idempotency, token })),
      )

      const orders = await ordersOf(worker, buyer)
      expect(orders).toHaveLength(1)
      const created = answers.find((a) => a.status === 'fulfilled') as PromiseFulfilledResult<OrderBody>
      const replayed = answers.find((a) => a.status === 'rejected') as PromiseRejectedResult
      expect(created.value.id).toBe(orders[0])
      expect(replayed.reason).toMatchObject({ storedStatus: 201, storedBody: { id: orders[0] } })
      expect(await settledAuditOf(worker, admin, saleId)).toMatchObject({
        available: 4,
        gate: 4,
        inFlight: 0,
        drift: 0,
        violations: [],
      })
    })
  })

  describe('on the Postgres path and in checkout', () => {
    const apps = new Map<string, FastifyInstance>()
    let admin: TestUser

    beforeAll(async () => {
      for (const strategy of ['atomic', 'pessimistic', 'optimistic'])
        apps.set(strategy, await buildTestApp({ STOCK_STRATEGY: strategy }))
      admin = await newAdmin(apps.get('atomic')!)
    })
    afterAll(async () => {
      await Promise.all([...apps.values()].map((app) => app.close()))
    })

    it.each(['atomic', 'pessimistic', 'optimistic'])(
      'when a keyed %s purchase committed but the answer to its COMMIT was lost, then the buyer hears 503 OUTCOME_UNKNOWN and the retry with the same key gets that order',
      async (strategy) => {
        const app = apps.get(strategy)!
        const saleId = await newSale(app, admin, { units: 1 })
        const buyer = await newCustomer(app)
        const key = randomUUID()
        // The atomic purchase is one statement in autocommit: its answer is the one lost.
        const { cut } = loseNextCommit(
          app.db.primary,
          observer,
          'committed',
          (query) =>
            isCommit(query) ||
            (strategy === 'atomic' && (query as { name?: string }).name === WRITE_SALE_ORDERS_STATEMENT),
        )
        const first = await purchase(app, buyer, saleId, key)
        await cut
        expectOutcomeUnknown(first)
        const orders = await ordersOf(app, buyer)
        expect(orders).toHaveLength(1)

        const retry = await purchase(app, buyer, saleId, key)

        expectReplayOf(retry, orders[0]!)
        expect(await ordersOf(app, buyer)).toEqual(orders)
      },
    )

    it('when the first attempt is still committing on the server as its retry arrives, then the retry waits for it and replays its order (no PER_USER_LIMIT, no second order)', async () => {
      const app = apps.get('atomic')!
      const saleId = await newSale(app, admin, { units: 5, perUserLimit: 1 })
      const buyer = await newCustomer(app)
      const key = randomUUID()
      const clients: pg.PoolClient[] = []
      const remember = (client: pg.PoolClient) => clients.push(client)
      app.db.primary.on('acquire', remember)
      // Another session holds the sale's stock row: the purchase's one statement waits for it at its
      // last step, the stock UPDATE, with the order and the answer already written (not committed).
      const holder = await observer.connect()
      let retry: Promise<LightMyRequestResponse>
      try {
        await holder.query('BEGIN')
        await holder.query('SELECT 1 FROM flash_sale_stock WHERE sale_id = $1 FOR UPDATE', [saleId])
        const firstAnswer = purchase(app, buyer, saleId, key)
        // (pg_stat_activity keeps the first 1 kB of a query: the statement's start.)
        const pid = await waitingBackend('%WITH clock AS (%')
        // The connection breaks on the client's side; the server, blocked on the lock, does not notice.
        const client = clients.find((c) => (c as unknown as { processID: number }).processID === pid)!
        ;(client as unknown as { connection: { stream: Socket } }).connection.stream.destroy()
        expectOutcomeUnknown(await firstAnswer)

        retry = purchase(app, buyer, saleId, key)
        // The retry asks Postgres, which makes it wait for the first attempt's record; then the first
        // attempt gets the row and commits.
        await waitingBackend('%', pid)
      } finally {
        app.db.primary.removeListener('acquire', remember)
        await holder.query('COMMIT')
        holder.release()
      }

      const answer = await retry
      const orders = await ordersOf(app, buyer)
      expect(orders).toHaveLength(1)
      expectReplayOf(answer, orders[0]!)
    })

    it('when two atomic purchases with one key both get past Redis, then Postgres still makes one order and the other replays it', async () => {
      const app = apps.get('atomic')!
      const saleId = await newSale(app, admin, { units: 5, perUserLimit: 2 })
      const buyer = await newCustomer(app)
      const rows = rowStrategy('atomic', {
        lockTimeoutMs: app.config.STOCK_LOCK_TIMEOUT_MS,
        retry: retryPolicyOf(app.config),
        hooks: { onConflict: () => {}, onSettled: () => {} },
      })
      const path = createPostgresPurchasePath({ db: app.db, rows, config: app.config })
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

      const orders = await ordersOf(app, buyer)
      expect(orders).toHaveLength(1)
      const created = answers.find((a) => a.status === 'fulfilled') as PromiseFulfilledResult<OrderBody>
      const replayed = answers.find((a) => a.status === 'rejected') as PromiseRejectedResult
      expect(created.value.id).toBe(orders[0])
      expect(replayed.reason).toMatchObject({ storedStatus: 201, storedBody: { id: orders[0] } })
      expect(await auditOf(app, admin, saleId)).toMatchObject({ available: 4, reserved: 1, violations: [] })
    })

    it('when a keyed checkout committed but the answer to its COMMIT was lost, then 503 OUTCOME_UNKNOWN and the retry with the same key gets that order', async () => {
      const app = apps.get('optimistic')!
      const customer = await newCustomer(app)
      const productId = await newProduct(app, admin, { stock: 10 })
      await fillCart(app, customer, [{ productId, quantity: 2 }])
      const checkout = (key: string) =>
        app.inject({
          method: 'POST',
          url: '/api/checkout',
          headers: { ...customer.headers, 'idempotency-key': key },
        })
      const key = randomUUID()
      const { cut } = loseNextCommit(app.db.primary, observer, 'committed')
      const first = await checkout(key)
      await cut
      expectOutcomeUnknown(first)
      const orders = await ordersOf(app, customer)
      expect(orders).toHaveLength(1)

      const retry = await checkout(key)

      expectReplayOf(retry, orders[0]!)
      expect(await ordersOf(app, customer)).toEqual(orders)
    })
  })

  /** The pid of a backend (not `except`) waiting for a lock while running a query LIKE `pattern`. */
  async function waitingBackend(pattern: string, except = 0): Promise<number> {
    const deadline = Date.now() + 5000
    while (Date.now() < deadline) {
      const { rows } = await observer.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1 AND pid <> $2`,
        [pattern, except],
      )
      if (rows[0]) return rows[0].pid
      await sleep(5)
    }
    throw new Error(`no backend waits for a lock running ${pattern}`)
  }
})
