import { randomUUID } from 'node:crypto'
import type { PoolClient } from 'pg'
import { withTransaction } from '../db/transaction.js'
import { PerUserLimitError, SaleUnavailableError } from '../errors.js'
import type { IdempotentRequest } from '../idempotency/idempotency.plugin.js'
import { replayOrReuseError } from '../idempotency/idempotency.plugin.js'
import { insertResponsesIfAbsent, scopeId } from '../idempotency/idempotency.repository.js'
import type { Metrics } from '../metrics.js'
import type { Order } from '../orders/orders.repository.js'
import type { Db } from '../plugins/postgres.plugin.js'
import type { StockGate } from './stock-gate.js'
import { addUserUnitsWithinLimit, findSale, type Sale } from './sales.repository.js'

/** A buyer the gate admitted, waiting for its order to be written. */
export interface AdmittedPurchase {
  saleId: number
  userId: string
  quantity: number
  token: string
  idempotency: IdempotentRequest | null
}

interface Pending extends AdmittedPurchase {
  orderId: string
  resolve(order: Order): void
  reject(err: Error): void
}

export interface BatcherOptions {
  db: Db
  gate: StockGate
  metrics: Metrics
  reservationTtlSeconds: number
  /** Most orders one transaction writes. */
  maxBatch: number
  /** How long the first buyer of an idle worker waits for company before its batch is written. */
  maxWaitMs: number
  /** How many batch transactions one worker runs at once. */
  maxConcurrent: number
}

/**
 * Write batching for the redis-gate strategy. Admitted buyers queue here; one transaction writes a
 * whole batch: the batch's idempotency records, the buyers' per-user allowance, one multi-row INSERT
 * of the orders and their items, and one conditional UPDATE of the sale's stock for the batch's sum.
 * Each buyer is answered when its batch commits. While batches are being written the next ones fill
 * up, so the batch size follows the load: 1 when idle (after maxWaitMs), up to maxBatch in a stampede.
 */
export function createOrderBatcher(options: BatcherOptions) {
  const { db, gate, metrics } = options
  const queue: Pending[] = []
  let writing = 0
  let timer: NodeJS.Timeout | null = null
  const idleWaiters: (() => void)[] = []
  // A sale's price, product and limit never change once it is created: read each once per worker.
  const sales = new Map<number, Promise<Sale | undefined>>()

  function submit(purchase: AdmittedPurchase): Promise<Order> {
    return new Promise<Order>((resolve, reject) => {
      queue.push({ ...purchase, orderId: randomUUID(), resolve, reject })
      // A full batch goes at once; a lone buyer waits maxWaitMs for company. While every writer is busy
      // the queue just grows, and the next writer to finish takes it.
      if (writing >= options.maxConcurrent) return
      if (queue.length >= options.maxBatch) startWriters()
      else timer ??= setTimeout(startWriters, options.maxWaitMs)
    })
  }

  // Concurrency: up to maxConcurrent batch transactions per worker overlap. They serialise only on
  // the sale row's UPDATE, which each takes last, just before COMMIT, so the row is locked briefly.
  function startWriters(): void {
    if (timer) clearTimeout(timer)
    timer = null
    while (queue.length > 0 && writing < options.maxConcurrent) {
      const batch = queue.splice(0, options.maxBatch)
      writing++
      void writeBatch(batch).finally(() => {
        writing--
        if (queue.length > 0) startWriters()
        else if (writing === 0) idleWaiters.splice(0).forEach((wake) => wake())
      })
    }
  }

  async function writeBatch(batch: Pending[]): Promise<void> {
    for (const [saleId, items] of groupBy(batch, (p) => p.saleId)) await writeSaleBatch(saleId, items)
  }

  async function saleOf(saleId: number): Promise<Sale> {
    if (!sales.has(saleId)) sales.set(saleId, findSale(db.primary, saleId))
    const sale = await sales.get(saleId)!
    if (!sale) throw new Error(`sale ${saleId} vanished from Postgres`)
    return sale
  }

  async function writeSaleBatch(saleId: number, items: Pending[]): Promise<void> {
    const settled = new Map<Pending, { order: Order } | { error: Error }>()
    try {
      const sale = await saleOf(saleId)
      const now = Date.now()
      const ordersOf = new Map(items.map((p) => [p, orderFor(p, sale, now, options.reservationTtlSeconds)]))
      const version = await withTransaction(db.primary, async (tx) => {
        settled.clear()
        const live = await dropReplaysAndOverLimit(tx, sale, items, ordersOf, settled)
        if (live.length === 0) return null
        await insertOrders(
          tx,
          sale,
          live.map((p) => ordersOf.get(p)!),
          live,
        )
        const units = live.reduce((sum, p) => sum + p.quantity, 0)
        // Concurrency: one conditional UPDATE for the whole batch. Postgres stays the authority: if the
        // gate ever admitted more than Postgres has, the UPDATE matches nothing and the batch fails.
        const { rows } = await tx.query<{ version: number }>(
          `UPDATE flash_sales SET available = available - $2, reserved = reserved + $2, version = version + 1
            WHERE id = $1 AND available >= $2 RETURNING version`,
          [saleId, units],
        )
        if (rows.length === 0) throw new Error(`sale ${saleId}: Postgres has fewer than ${units} units`)
        for (const p of live) settled.set(p, { order: ordersOf.get(p)! })
        return rows[0]!.version
      })
      metrics.orderBatches.inc({ outcome: 'committed' })
      metrics.orderBatchSize.observe(items.length)
      const confirmed = items.filter((p) => 'order' in (settled.get(p) ?? {}))
      if (version !== null)
        await gate.confirm(
          saleId,
          version,
          confirmed.map((p) => p.token),
        )
      for (const p of items.filter((p) => !confirmed.includes(p))) await gate.release(saleId, p.token)
    } catch (err) {
      // No buyer of a failed batch gets 201, and the gate gets every unit back.
      metrics.orderBatches.inc({ outcome: 'failed' })
      settled.clear()
      for (const p of items) settled.set(p, { error: new SaleUnavailableError(err as Error) })
      await Promise.all(items.map((p) => gate.release(saleId, p.token).catch(() => false)))
    }
    for (const p of items) {
      const result = settled.get(p)!
      if ('order' in result) p.resolve(result.order)
      else p.reject(result.error)
    }
  }

  return {
    submit,
    /** Writes what is queued and waits for it; for a stopping worker. */
    async flush(): Promise<void> {
      if (queue.length === 0 && writing === 0) return
      const idle = new Promise<void>((resolve) => idleWaiters.push(resolve))
      startWriters()
      await idle
    },
    get queued() {
      return queue.length
    },
  }
}

function orderFor(p: Pending, sale: Sale, now: number, ttlSeconds: number): Order {
  return {
    id: p.orderId,
    userId: p.userId,
    saleId: sale.id,
    status: 'reserved',
    totalCents: p.quantity * sale.priceCents,
    expiresAt: new Date(now + ttlSeconds * 1000).toISOString(),
    createdAt: new Date(now).toISOString(),
    paidAt: null,
    reservationToken: p.token,
    items: [{ productId: sale.productId, quantity: p.quantity, unitPriceCents: sale.priceCents }],
  }
}

/**
 * Settles the buyers that must not get a new order: a key Postgres already answered (replayed), and
 * users the database's per-user limit refuses. Returns the rest. Their idempotency records are
 * inserted here, in the batch's transaction, so order and record commit together.
 */
async function dropReplaysAndOverLimit(
  tx: PoolClient,
  sale: Sale,
  items: Pending[],
  ordersOf: Map<Pending, Order>,
  settled: Map<Pending, { order: Order } | { error: Error }>,
): Promise<Pending[]> {
  const keyed = items.filter((p) => p.idempotency)
  const stored = await insertResponsesIfAbsent(
    tx,
    keyed.map((p) => ({ ...p.idempotency!.record, status: 201, body: ordersOf.get(p)! })),
  )
  for (const p of keyed) {
    const found = stored.get(scopeId(p.idempotency!.record))
    if (found) settled.set(p, { error: replayOrReuseError(p.idempotency!.record, found) })
  }
  const candidates = items.filter((p) => !settled.has(p))
  // Concurrency: allowances are raised in user-id order, so two overlapping batches that share users
  // lock those rows in the same order and cannot deadlock.
  const perUser = [...groupBy(candidates, (p) => p.userId)]
    .map(([userId, own]) => ({ userId, quantity: own.reduce((sum, p) => sum + p.quantity, 0) }))
    .sort((a, b) => (a.userId < b.userId ? -1 : 1))
  const within = await addUserUnitsWithinLimit(tx, sale.id, sale.perUserLimit, perUser)
  const overLimit = candidates.filter((p) => !within.has(p.userId))
  for (const p of overLimit) settled.set(p, { error: new PerUserLimitError() })
  const forgetKeys = overLimit.filter((p) => p.idempotency).map((p) => p.idempotency!.record)
  if (forgetKeys.length > 0) {
    await tx.query(
      `DELETE FROM idempotency_keys k USING unnest($1::uuid[], $2::text[]) AS r (u, kk)
        WHERE k.user_id = r.u AND k.key = r.kk`,
      [forgetKeys.map((r) => r.userId), forgetKeys.map((r) => r.key)],
    )
  }
  return candidates.filter((p) => within.has(p.userId))
}

/** One statement for the batch's orders and their items. */
async function insertOrders(tx: PoolClient, sale: Sale, orders: Order[], items: Pending[]): Promise<void> {
  await tx.query(
    `WITH o AS (
       INSERT INTO orders (id, user_id, sale_id, status, total_cents, expires_at, created_at, updated_at, reservation_token)
       SELECT id, u, $1, 'reserved', q * $3, e, c, c, t
         FROM unnest($4::uuid[], $5::uuid[], $6::int[], $7::timestamptz[], $8::timestamptz[], $9::text[])
           AS x (id, u, q, e, c, t)
       RETURNING id
     )
     INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
     SELECT x.id, $2, x.q, $3 FROM unnest($4::uuid[], $6::int[]) AS x (id, q)`,
    [
      sale.id,
      sale.productId,
      sale.priceCents,
      orders.map((o) => o.id),
      orders.map((o) => o.userId),
      items.map((p) => p.quantity),
      orders.map((o) => o.expiresAt),
      orders.map((o) => o.createdAt),
      items.map((p) => p.token),
    ],
  )
}

function groupBy<T, K>(values: T[], keyOf: (value: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>()
  for (const value of values) {
    const group = groups.get(keyOf(value))
    if (group) group.push(value)
    else groups.set(keyOf(value), [value])
  }
  return groups
}

export type OrderBatcher = ReturnType<typeof createOrderBatcher>
