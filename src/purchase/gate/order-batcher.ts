import { randomUUID } from 'node:crypto'
import type { Db } from '../../db/pool.js'
import { PG, pgErrorCode, withTransaction } from '../../db/transaction.js'
import {
  type AppError,
  CommitOutcomeUnknownError,
  IdempotentReplayError,
  SaleUnavailableError,
  UnauthorizedError,
} from '../../errors.js'
import type { IdempotentRequest } from '../../idempotency/idempotency.js'
import { scopeId } from '../../idempotency/idempotency.repository.js'
import type { Metrics } from '../../metrics.js'
import type { Order } from '../../orders/order.js'
import type { StoredSale } from '../../sales/sale.js'
import { findSale } from '../../sales/sales.repository.js'
import { reserveReturningVersion, SALE_STOCK } from '../../stock/stock.repository.js'
import { groupBy, writeSaleOrders, type SaleBuyer } from '../sale-orders.js'
import { createBatchQueue } from './batch-queue.js'
import type { StockGate } from './stock-gate.js'
import type { Log } from '../../log.js'

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

interface Pending extends AdmittedPurchase, SaleBuyer {
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
 * Write batching for the gate path: admitted buyers wait in a batch queue (./batch-queue.ts), and one
 * transaction writes a whole sale's batch; each buyer is answered when its batch commits. A buyer whose
 * own row breaks the batch (a deleted account, bad data) is isolated by splitting: the others still
 * commit, and only that buyer is refused.
 */
export function createOrderBatcher(options: BatcherOptions) {
  const { db, gate, metrics } = options
  // Concurrency: up to maxConcurrent batch transactions per worker overlap. They serialise only on
  // the sale row's UPDATE, which each takes last, just before COMMIT, so the row is locked briefly.
  const queue = createBatchQueue<Pending>({
    write: async (batch) => {
      for (const [saleId, items] of groupBy(batch, (p) => p.saleId)) await writeSaleBatch(saleId, items)
    },
    maxBatch: options.maxBatch,
    maxWaitMs: options.maxWaitMs,
    maxConcurrent: options.maxConcurrent,
  })
  // A sale's price, product and limit never change once it is created: read each once per worker.
  // Concurrency: only a sale that was found is kept. A lookup that failed (a Postgres blip) or found
  // nothing is asked again by the next batch; kept, it would fail that sale on this worker until restart.
  const sales = new Map<number, StoredSale>()

  function submit(purchase: AdmittedPurchase): Promise<Order> {
    return new Promise<Order>((resolve, reject) => {
      queue.push({
        ...purchase,
        orderId: randomUUID(),
        reservationToken: purchase.token,
        resolve,
        reject,
      })
    })
  }

  async function saleOf(saleId: number): Promise<StoredSale> {
    const known = sales.get(saleId)
    if (known) return known
    const sale = await findSale(db.primary, saleId)
    if (!sale) throw new Error(`sale ${saleId} vanished from Postgres`)
    sales.set(saleId, sale)
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
    let answers = new Map<Pending, Answer>()
    const { firsts, repeats } = splitRepeatedKeys(items)
    const version = await withTransaction(db.primary, async (tx) => {
      answers = await writeSaleOrders(tx, sale, firsts, options.reservationTtlSeconds)
      const live = firsts.filter((p) => 'order' in answers.get(p)!)
      if (live.length === 0) return null
      const units = live.reduce((sum, p) => sum + p.quantity, 0)
      // Concurrency: one conditional UPDATE for the whole batch. Postgres stays the authority: if the
      // gate ever admitted more than Postgres has, the UPDATE matches nothing and the batch fails.
      const version = await reserveReturningVersion(tx, SALE_STOCK, sale.id, units)
      if (version === null) throw new GateAheadOfPostgresError(sale.id, units)
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
    flush: () => queue.flush(),
    get queued() {
      return queue.queued
    },
  }
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

export type OrderBatcher = ReturnType<typeof createOrderBatcher>
