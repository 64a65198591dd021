import { randomUUID } from 'node:crypto'
import type { PoolClient } from 'pg'
import type { Db } from '../db/pool.js'
import { PG, pgErrorCode, withTransaction } from '../db/transaction.js'
import {
  type AppError,
  CommitOutcomeUnknownError,
  IdempotentReplayError,
  PerUserLimitError,
  SaleUnavailableError,
  UnauthorizedError,
} from '../errors.js'
import { forgetResponses, saveResponses, type IdempotentRequest } from '../idempotency/idempotency.js'
import { scopeId } from '../idempotency/idempotency.repository.js'
import type { Metrics } from '../metrics.js'
import { newReservedOrder, type Order } from '../orders/order.js'
import { insertSaleOrders } from '../orders/orders.repository.js'
import type { StoredSale } from '../sales/sale.js'
import { addUserUnitsWithinLimit, findSale } from '../sales/sales.repository.js'
import { reserveReturningVersion, SALE_STOCK } from '../stock/stock.repository.js'
import type { StockGate } from './stock-gate.js'
import type { Log } from '../log.js'

/** The gate admitted a batch Postgres has not the units for: the gate's count is wrong, not the buyers. */
class GateAheadOfPostgresError extends Error {
  constructor(
    readonly saleId: number,
    units: number,
  ) {
    super(`sale ${saleId}: Postgres has fewer than the ${units} units the gate admitted`)
    this.name = 'GateAheadOfPostgresError'
  }
}

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

/** A buyer's answer; `tokenStays` when nobody knows whether its order committed. */
type Answer = { order: Order } | { error: AppError; tokenStays?: true }

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
  log: Pick<Log, 'warn'>
}

/**
 * Write batching for the gate path. Admitted buyers queue here; one transaction writes a whole batch
 * and each buyer is answered when its batch commits. While batches are being written the next ones
 * fill up, so the batch size follows the load: 1 when idle (after maxWaitMs), up to maxBatch in a
 * stampede. A buyer whose own row breaks the batch (a deleted account, bad data) is isolated by
 * splitting: the others still commit, and only that buyer is refused.
 */
export function createOrderBatcher(options: BatcherOptions) {
  const { db, gate, metrics } = options
  const queue: Pending[] = []
  let writing = 0
  let timer: NodeJS.Timeout | null = null
  const idleWaiters: (() => void)[] = []
  // A sale's price, product and limit never change once it is created: read each once per worker.
  const sales = new Map<number, Promise<StoredSale | undefined>>()

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

  async function saleOf(saleId: number): Promise<StoredSale> {
    if (!sales.has(saleId)) sales.set(saleId, findSale(db.primary, saleId))
    const sale = await sales.get(saleId)!
    if (!sale) throw new Error(`sale ${saleId} vanished from Postgres`)
    return sale
  }

  /** Writes one sale's batch, hands every unit that did not become an order back, answers everyone. */
  async function writeSaleBatch(saleId: number, items: Pending[]): Promise<void> {
    const answers = await saleOf(saleId).then(
      (sale) => commitIsolatingBadRows(sale, items),
      (err: Error) => failed(items, err),
    )
    // Concurrency: gate-release-token removes the token atomically, so a unit goes back exactly once
    // even if the reconciler looks at the same token meanwhile.
    const refused = items.filter((p) => {
      const answer = answers.get(p)!
      return !('order' in answer) && !answer.tokenStays
    })
    await Promise.all(refused.map((p) => gate.releaseToken(saleId, p.token).catch(() => false)))
    for (const p of items) {
      const answer = answers.get(p)!
      if ('order' in answer) p.resolve(answer.order)
      else p.reject(answer.error)
    }
  }

  /** The answers of a (part of a) batch that failed as a whole: no buyer of it gets 201. */
  function failed(items: Pending[], err: Error): Map<Pending, Answer> {
    // Concurrency: when the COMMIT's answer is lost, the orders may exist, so the tokens stay in
    // flight for the reconciler, which after their deadline drops those whose order exists and releases
    // the others exactly once. Released here, the units of orders that did commit would be offered
    // again: the gate would drift up and sell units Postgres no longer has (its UPDATE then refuses).
    if (err instanceof CommitOutcomeUnknownError) {
      metrics.orderBatches.inc({ outcome: 'unknown' })
      return new Map(items.map((p) => [p, { error: err, tokenStays: true }]))
    }
    // Concurrency: a gate ahead of Postgres (it admitted units Postgres does not have) is marked stale,
    // so it is rebuilt from Postgres before it admits again. Left as it is, it would go on admitting
    // against its wrong count: every batch of the sale would fail the same way, for the rest of the sale.
    if (err instanceof GateAheadOfPostgresError) {
      options.log.warn({ saleId: err.saleId }, 'the gate is ahead of Postgres; it will be rebuilt')
      void gate.markStale(err.saleId).catch(() => undefined)
    }
    // Certainly rolled back (Postgres down, a timeout, the gate ahead of Postgres): the units go back.
    metrics.orderBatches.inc({ outcome: 'failed' })
    return new Map(items.map((p) => [p, { error: new SaleUnavailableError(err) }]))
  }

  /**
   * Commits the batch. When a per-row failure (a constraint or a bad value, SQLSTATE classes 22 and
   * 23) breaks it, the halves are committed separately, down to the buyer who causes it: one bad buyer
   * costs its batch about 2·log2(size) extra transactions, not everybody's order. Other failures
   * (Postgres away, a timeout, a lost COMMIT answer) would break every half too: they fail that part of
   * the batch at once, and a half that committed before keeps its answers.
   */
  async function commitIsolatingBadRows(sale: StoredSale, items: Pending[]): Promise<Map<Pending, Answer>> {
    try {
      return await commitBatch(sale, items)
    } catch (err) {
      const sqlClass = pgErrorCode(err)?.slice(0, 2)
      if (sqlClass !== '22' && sqlClass !== '23') return failed(items, err as Error)
      if (items.length === 1) {
        options.log.warn({ err, userId: items[0]!.userId }, 'a purchase could not be written')
        return new Map([[items[0]!, { error: refusalFor(err) }]])
      }
      metrics.orderBatches.inc({ outcome: 'split' })
      const half = Math.ceil(items.length / 2)
      const first = await commitIsolatingBadRows(sale, items.slice(0, half))
      const second = await commitIsolatingBadRows(sale, items.slice(half))
      return new Map([...first, ...second])
    }
  }

  /**
   * One transaction: idempotency records, per-user units, one multi-row INSERT of the orders and
   * their items, and last the sale row's UPDATE for the batch's sum.
   */
  async function commitBatch(sale: StoredSale, items: Pending[]): Promise<Map<Pending, Answer>> {
    const orders = new Map(items.map((p) => [p, orderFor(p, sale, options.reservationTtlSeconds)]))
    const answers = new Map<Pending, Answer>()
    const { firsts, repeats } = splitRepeatedKeys(items)
    const version = await withTransaction(db.primary, async (tx) => {
      answers.clear()
      const live = await settleReplaysAndOverLimit(tx, sale, firsts, orders, answers)
      if (live.length === 0) return null
      await insertSaleOrders(
        tx,
        { saleId: sale.id, productId: sale.productId, unitPriceCents: sale.priceCents },
        live.map((p) => ({ ...orders.get(p)!, quantity: p.quantity, reservationToken: p.token })),
      )
      const units = live.reduce((sum, p) => sum + p.quantity, 0)
      // Concurrency: one conditional UPDATE for the whole batch. Postgres stays the authority: if the
      // gate ever admitted more than Postgres has, the UPDATE matches nothing and the batch fails.
      const version = await reserveReturningVersion(tx, SALE_STOCK, sale.id, units)
      if (version === null) throw new GateAheadOfPostgresError(sale.id, units)
      for (const p of live) answers.set(p, { order: orders.get(p)! })
      return version
    })
    for (const [p, first] of repeats) {
      const answer = answers.get(first)!
      answers.set(p, {
        error: 'order' in answer ? new IdempotentReplayError(201, answer.order) : answer.error,
      })
    }
    metrics.orderBatches.inc({ outcome: 'committed' })
    metrics.orderBatchSize.observe(items.length)
    const written = items.filter((p) => 'order' in answers.get(p)!).map((p) => p.token)
    // The orders stand whatever Redis says now: if the confirm is lost, the reconciler finds their
    // tokens past the deadline, sees the orders and drops the tokens.
    if (version !== null && written.length > 0) {
      await gate
        .confirm(sale.id, version, written)
        .catch((err: Error) => options.log.warn({ err }, 'gate confirm failed; the reconciler will'))
    }
    return answers
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

function orderFor(p: Pending, sale: StoredSale, ttlSeconds: number): Order {
  const now = Date.now()
  return newReservedOrder({
    id: p.orderId,
    userId: p.userId,
    saleId: sale.id,
    expiresAt: new Date(now + ttlSeconds * 1000).toISOString(),
    createdAt: new Date(now).toISOString(),
    items: [{ productId: sale.productId, quantity: p.quantity, unitPriceCents: sale.priceCents }],
  })
}

/** What a buyer whose own row broke the batch is told. */
function refusalFor(err: unknown): AppError {
  // The token was signed for a user who no longer exists (deleted, or the database was re-seeded).
  const constraint = (err as { constraint?: string }).constraint ?? ''
  if (pgErrorCode(err) === PG.foreignKeyViolation && constraint.endsWith('_user_id_fkey'))
    return new UnauthorizedError('the account this token belongs to no longer exists')
  return new SaleUnavailableError(err as Error)
}

/**
 * Concurrency: two buyers of one batch with the same Idempotency-Key (two retries that both found no
 * answer, or a key Redis forgot) would both get an order: the batch saves their records in one INSERT,
 * and ON CONFLICT DO NOTHING skips the second record silently instead of reporting it. So only the first
 * of each key is written; each repeat gets the first's answer (its order as a replay) and its unit back.
 */
function splitRepeatedKeys(items: Pending[]): { firsts: Pending[]; repeats: Map<Pending, Pending> } {
  const firstOfKey = new Map<string, Pending>()
  const firsts: Pending[] = []
  const repeats = new Map<Pending, Pending>()
  for (const p of items) {
    const first = p.idempotency && firstOfKey.get(scopeId(p.idempotency))
    if (first) repeats.set(p, first)
    else {
      if (p.idempotency) firstOfKey.set(scopeId(p.idempotency), p)
      firsts.push(p)
    }
  }
  return { firsts, repeats }
}

/**
 * Settles the buyers that must not get a new order: a key Postgres already answered (replayed), and
 * users the database's per-user limit refuses. Returns the rest. Their idempotency records are saved
 * here, in the batch's transaction, so order and record commit together.
 */
async function settleReplaysAndOverLimit(
  tx: PoolClient,
  sale: StoredSale,
  items: Pending[],
  orders: Map<Pending, Order>,
  answers: Map<Pending, Answer>,
): Promise<Pending[]> {
  const keyed = items.filter((p) => p.idempotency)
  const replays = await saveResponses(
    tx,
    keyed.map((p) => ({ request: p.idempotency!, status: 201, body: orders.get(p)! })),
  )
  for (const p of keyed) {
    const replay = replays.get(p.idempotency!)
    if (replay) answers.set(p, { error: replay })
  }
  const candidates = items.filter((p) => !answers.has(p))
  // Concurrency: per-user units are raised in user-id order, so two overlapping batches that share
  // users lock those rows in the same order and cannot deadlock.
  const perUser = [...groupBy(candidates, (p) => p.userId)]
    .map(([userId, own]) => ({ userId, quantity: own.reduce((sum, p) => sum + p.quantity, 0) }))
    .sort((a, b) => (a.userId < b.userId ? -1 : 1))
  const within = await addUserUnitsWithinLimit(tx, sale.id, sale.perUserLimit, perUser)
  const overLimit = candidates.filter((p) => !within.has(p.userId))
  for (const p of overLimit) answers.set(p, { error: new PerUserLimitError() })
  await forgetResponses(
    tx,
    overLimit.filter((p) => p.idempotency).map((p) => p.idempotency!),
  )
  return candidates.filter((p) => within.has(p.userId))
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
