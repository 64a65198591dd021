import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Db } from '../../db/pool.js'
import { PG, pgErrorCode, statementAbortOf, withTransactionEndingInReturning } from '../../db/transaction.js'
import {
  type AppError,
  CommitOutcomeUnknownError,
  IdempotentReplayError,
  SaleUnavailableError,
  SoldOutError,
  UnauthorizedError,
} from '../../errors.js'
import {
  finishedState,
  KEEP_MS,
  UNKNOWN_TTL_MS,
  unknownState,
  type IdempotentRequest,
} from '../../idempotency/idempotency.js'
import { scopeId } from '../../idempotency/idempotency.repository.js'
import type { Metrics } from '../../metrics.js'
import type { Order } from '../../orders/order.js'
import { findSale } from '../../sales/sales.repository.js'
import {
  asShortage,
  decrementsReturningVersion,
  SALE_STOCK,
  type StockLine,
} from '../../stock/stock.repository.js'
import { createSaleTerms } from '../purchase-path.js'
import {
  KEY_ANSWERED_MEANWHILE,
  RESERVATION_LAPSED,
  reservationLapsedGuard,
  writeSaleOrders,
  type SaleBuyer,
  type SaleOrderAnswer,
} from '../sale-orders.repository.js'
import { createBatchQueue } from './batch-queue.js'
import { backendRunning } from './gate-outbox.repository.js'
import { settleTokens } from './reconciler.js'
import type { KeyAnswer, StockGate } from './stock-gate.js'
import type { Log } from '../../log.js'

/** The gate admitted a batch Postgres has not the units for: the gate's count is wrong, not the buyers. */
class GateAheadOfPostgresError extends Error {
  constructor(readonly saleId: number) {
    super(`sale ${saleId}: Postgres has fewer units than the gate admitted`)
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

/**
 * A buyer's answer: its order with the version its batch's UPDATE produced, or the error;
 * `tokenStays` when nobody knows whether its order committed.
 */
type Answer = { order: Order; version: number } | { error: AppError; tokenStays?: true }

/** How often a lost COMMIT's server process is asked after, until it has ended. */
const SETTLE_POLL_MS = 50

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
  /**
   * Postgres' statement timeout (ms): how long a lost COMMIT's server process is waited for before its
   * tokens are settled anyway (a process still running then holds the stock row, and settling waits for it).
   */
  statementTimeoutMs: number
  log: Pick<Log, 'warn'>
}

/**
 * Write batching for the gate path: admitted buyers wait in a batch queue (./batch-queue.ts), and one
 * transaction writes a whole batch, whatever sales its buyers bought from; each buyer is answered as
 * soon as its batch commits, and one gate-confirm call per sale then drops the batch's tokens and
 * records the keyed buyers' answers in Redis. A buyer whose own row breaks the batch (a deleted
 * account, bad data) is isolated by splitting: the others still commit, and only that buyer is refused.
 */
export function createOrderBatcher(options: BatcherOptions) {
  const { db, gate, metrics } = options
  // Concurrency: up to maxConcurrent batch transactions per worker overlap. They serialise only on
  // the sale rows' UPDATEs, which go to Postgres with COMMIT in one round trip, so a row is locked only
  // while the server runs them. Several sales' UPDATEs run in sale-id order (decrementsReturningVersion)
  // and per-user units in (sale, user) order, so two batches sharing sales cannot deadlock.
  const queue = createBatchQueue<Pending>({
    write: writeBatch,
    maxBatch: options.maxBatch,
    maxWaitMs: options.maxWaitMs,
    maxConcurrent: options.maxConcurrent,
  })
  const terms = createSaleTerms((saleId) => findSale(db.primary, saleId))

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

  async function saleOf(saleId: number) {
    const sale = await terms.of(saleId)
    if (!sale) throw new Error(`sale ${saleId} vanished from Postgres`)
    return sale
  }

  /**
   * Writes one batch, answers every buyer at once, then settles Redis: units that did not become an
   * order go back to the gate, and per sale one gate-confirm call (all in parallel) drops the written
   * tokens and records the keyed buyers' answers.
   * Concurrency: the buyers hear their answer before Redis knows it. If the confirm is lost, nothing is
   * wrong, only slower: the written tokens stay in flight until the reconciler finds them past their
   * deadline, sees their orders and drops them (units stay taken); a key keeps its in-flight state until
   * it lapses (LOCK_TTL_MS: a retry hears 409 busy meanwhile), and then the next attempt finds the order
   * through Postgres' saved answer (the gate refuses a buyer who holds units: gate-purchase.lua sends a
   * keyed one to Postgres first) or, if the gate admits it, through the batch's ON CONFLICT replay.
   */
  async function writeBatch(items: Pending[]): Promise<void> {
    const answers = await commitIsolatingBadRows(items)
    for (const p of items) {
      const answer = answers.get(p)!
      if ('order' in answer) p.resolve(answer.order)
      else p.reject(answer.error)
    }
    await Promise.all(
      [...groupBy(items, (p) => p.saleId)].map(([saleId, own]) => settleSale(saleId, own, answers)),
    )
  }

  async function settleSale(saleId: number, items: Pending[], answers: Map<Pending, Answer>) {
    // Concurrency: gate-release-token removes the token atomically, so a unit goes back exactly once
    // even if the reconciler looks at the same token meanwhile.
    const refused = items.filter((p) => {
      const answer = answers.get(p)!
      return !('order' in answer) && !answer.tokenStays
    })
    const written = items.flatMap((p) => {
      const answer = answers.get(p)!
      return 'order' in answer ? [{ token: p.token, version: answer.version }] : []
    })
    const keyed = items.filter((p) => p.idempotency).map((p) => keyAnswer(p, answers.get(p)!))
    await Promise.all([
      ...refused.map((p) => gate.releaseToken(saleId, p.token).catch(() => false)),
      written.length > 0 || keyed.length > 0
        ? gate
            .confirm(saleId, written, keyed)
            .then((retaken) => metrics.gateUnitsRetaken.inc(Number(retaken)))
            .catch((err: Error) =>
              options.log.warn({ err, saleId }, 'gate confirm failed; the reconciler will'),
            )
        : null,
    ])
  }

  /**
   * Settles the tokens of a batch whose COMMIT's answer was lost as soon as Postgres can tell, instead
   * of at their deadline: the gate is right again (no drift) once the outcome is settled. That is when
   * the batch's server process has ended (the server terminated it, or it saw its client go): nothing
   * of the transaction still runs, and a COMMIT it ran is visible. A process still running after the
   * statement timeout (a COMMIT waiting for a synchronous standby) holds the stock row, and
   * settleTokens waits for that row. When Postgres cannot be asked, the reconciler settles the tokens
   * at their deadline.
   */
  function settleOnceKnown(items: Pending[], err: CommitOutcomeUnknownError) {
    const tokens = new Map<number, string[]>()
    for (const p of items) tokens.set(p.saleId, [...(tokens.get(p.saleId) ?? []), p.token])
    const settle = async () => {
      const until = Date.now() + options.statementTimeoutMs
      while (
        err.backendPid !== undefined &&
        Date.now() < until &&
        (await backendRunning(db.primary, err.backendPid))
      )
        await sleep(SETTLE_POLL_MS)
      for (const [saleId, saleTokens] of tokens) {
        const settled = await settleTokens(db.primary, gate, saleId, saleTokens)
        metrics.gateTokensReleased.inc(settled.released)
      }
    }
    void settle().catch((e: Error) =>
      options.log.warn({ err: e }, 'lost COMMIT not settled; the reconciler will'),
    )
  }

  /** The answers of a (part of a) batch that failed as a whole: no buyer of it gets 201. */
  function failed(items: Pending[], err: Error): Map<Pending, Answer> {
    // Concurrency: when the COMMIT's answer is lost, the orders may exist, so the tokens stay in
    // flight until Postgres can tell (settleOnceKnown, or the reconciler at their deadline): those whose
    // order exists are dropped, the others released exactly once. Released here, the units of orders
    // that did commit would be offered again: the gate would drift up and sell units Postgres no longer
    // has (its UPDATE then refuses).
    if (err instanceof CommitOutcomeUnknownError) {
      metrics.orderBatches.inc({ outcome: 'unknown' })
      settleOnceKnown(items, err)
      return new Map(items.map((p) => [p, { error: err, tokenStays: true }]))
    }
    // Concurrency: a gate ahead of Postgres (it admitted units Postgres does not have) is marked stale,
    // so it is rebuilt from Postgres before it admits again. Left as it is, it would go on admitting
    // against its wrong count: every batch of the sale would fail the same way, for the rest of the sale.
    if (err instanceof GateAheadOfPostgresError) {
      options.log.warn({ saleId: err.saleId }, 'the gate is ahead of Postgres; it will be rebuilt')
      void gate.markStale(err.saleId).catch(() => undefined)
    }
    // Certainly rolled back (Postgres down, a timeout, too late, the gate ahead of Postgres): the units go back.
    metrics.orderBatches.inc({ outcome: outcomeOf(err) })
    return new Map(items.map((p) => [p, { error: new SaleUnavailableError(err) }]))
  }

  /**
   * Commits the batch. A sale row whose CHECK refused the batch's units (the gate was ahead of
   * Postgres) fails that sale's buyers, and the other sales' buyers are committed again without them.
   * When a per-row failure (a constraint or a bad value, SQLSTATE classes 22 and 23) breaks it, the
   * halves are committed separately, down to the buyer who causes it: one bad buyer costs its batch
   * about 2·log2(size) extra transactions, not everybody's order. Other failures (Postgres away, a
   * timeout, a lost COMMIT answer) would break every half too: they fail that part of the batch at
   * once, and a half that committed before keeps its answers.
   */
  async function commitIsolatingBadRows(items: Pending[], again = true): Promise<Map<Pending, Answer>> {
    try {
      return await commitBatch(items)
    } catch (err) {
      // A key of the batch was answered by another request after the statement's snapshot (only after
      // Redis forgot that key): nothing was written; once more, the statement replays that answer.
      if (again && statementAbortOf(err, KEY_ANSWERED_MEANWHILE) !== null)
        return commitIsolatingBadRows(items, false)
      // The batch waited so long that half of its reservations' time went by: nothing committed, and
      // every buyer of it hears 503 (a split would only wait again).
      if (statementAbortOf(err, RESERVATION_LAPSED) !== null) return failed(items, err as Error)
      const shortage = asShortage(err, SALE_STOCK)
      if (shortage instanceof SoldOutError) {
        const ahead = items.filter((p) => p.saleId === shortage.saleId)
        const others = items.filter((p) => p.saleId !== shortage.saleId)
        const failedAhead = failed(ahead, new GateAheadOfPostgresError(shortage.saleId))
        return new Map([...failedAhead, ...(others.length > 0 ? await commitIsolatingBadRows(others) : [])])
      }
      const sqlClass = pgErrorCode(err)?.slice(0, 2)
      if (sqlClass !== '22' && sqlClass !== '23') return failed(items, err as Error)
      if (items.length === 1) {
        options.log.warn({ err, userId: items[0]!.userId }, 'a purchase could not be written')
        return new Map([[items[0]!, { error: refusalFor(err) }]])
      }
      metrics.orderBatches.inc({ outcome: 'split' })
      const half = Math.ceil(items.length / 2)
      const first = await commitIsolatingBadRows(items.slice(0, half))
      const second = await commitIsolatingBadRows(items.slice(half))
      return new Map([...first, ...second])
    }
  }

  /**
   * One transaction for the whole batch: per sale, in sale-id order, the shared writer's one statement
   * (the keys' answers, the per-user units, the orders and their items); last, one UPDATE per sale for
   * its sum, sent with COMMIT in one round trip, which returns each row's new version.
   */
  async function commitBatch(items: Pending[]): Promise<Map<Pending, Answer>> {
    const bySale = [...groupBy(items, (p) => p.saleId)].sort(([a], [b]) => a - b)
    const saleRows = await Promise.all(bySale.map(([saleId]) => saleOf(saleId)))
    const written = new Map<Pending, SaleOrderAnswer>()
    const { firsts, repeats } = splitRepeatedKeys(items)
    const { rows } = await withTransactionEndingInReturning<StockLine[], { id: string; version: number }>(
      db.primary,
      async (tx) => {
        const lines: StockLine[] = []
        let firstCreatedAt: string | null = null
        for (const [i, [, own]] of bySale.entries()) {
          const buyers = own.filter((p) => firsts.has(p))
          const answers = await writeSaleOrders(tx, saleRows[i]!, buyers, {
            ttlSeconds: options.reservationTtlSeconds,
            stock: 'none',
          })
          for (const [p, answer] of answers) {
            written.set(p, answer)
            if ('order' in answer) firstCreatedAt ??= answer.order.createdAt
          }
          const units = buyers.reduce((sum, p) => sum + ('order' in answers.get(p)! ? p.quantity : 0), 0)
          if (units > 0) lines.push({ id: saleRows[i]!.id, quantity: units })
        }
        // Concurrency: Postgres stays the authority. The UPDATEs carry no `available >= n` guard: the
        // row's CHECK (available >= 0) refuses a gate that admitted more than Postgres has, and the
        // whole transaction with it (commitIsolatingBadRows then fails only that sale). After them,
        // once every lock is held, the guard aborts a batch that waited past half of its reservations'
        // time: no buyer hears 201 for an order already running out.
        const last =
          lines.length > 0
            ? `${decrementsReturningVersion(SALE_STOCK, lines)};\n` +
              reservationLapsedGuard(firstCreatedAt!, options.reservationTtlSeconds)
            : null
        return { last, result: lines }
      },
    )
    const versions = new Map(rows.map((row) => [Number(row.id), row.version]))
    const answers = new Map<Pending, Answer>()
    for (const [p, answer] of written) {
      answers.set(p, 'order' in answer ? { order: answer.order, version: versions.get(p.saleId)! } : answer)
    }
    for (const [p, first] of repeats) {
      const answer = written.get(first)!
      answers.set(p, {
        error: 'order' in answer ? new IdempotentReplayError(201, answer.order) : answer.error,
      })
    }
    metrics.orderBatches.inc({ outcome: 'committed' })
    metrics.orderBatchSize.observe(items.length)
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

/** A batch that certainly rolled back, as order_batches_total counts it. */
function outcomeOf(err: Error): 'failed' | 'lapsed' | 'gate_ahead' {
  if (err instanceof GateAheadOfPostgresError) return 'gate_ahead'
  return statementAbortOf(err, RESERVATION_LAPSED) !== null ? 'lapsed' : 'failed'
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
function splitRepeatedKeys(items: Pending[]): { firsts: Set<Pending>; repeats: Map<Pending, Pending> } {
  const firstOfKey = new Map<string, Pending>()
  const firsts = new Set<Pending>()
  const repeats = new Map<Pending, Pending>()
  for (const p of items) {
    const first = p.idempotency && firstOfKey.get(scopeId(p.idempotency))
    if (first) repeats.set(p, first)
    else {
      if (p.idempotency) firstOfKey.set(scopeId(p.idempotency), p)
      firsts.add(p)
    }
  }
  return { firsts, repeats }
}

/**
 * What a keyed buyer's key records once its batch is settled: the order, replayed for 24 hours; after
 * a 5xx an unknown outcome (the next attempt asks Postgres); anything else frees the key, so the next
 * attempt decides afresh (a PER_USER_LIMIT clears when a unit comes back; a replay comes from Postgres).
 */
function keyAnswer(p: Pending, answer: Answer): KeyAnswer {
  const request = p.idempotency!
  if ('order' in answer)
    return {
      request,
      token: p.token,
      state: finishedState(request, p.token, 201, JSON.stringify(answer.order)),
      keepMs: KEEP_MS,
    }
  if (answer.error.statusCode >= 500)
    return { request, token: p.token, state: unknownState(request, p.token), keepMs: UNKNOWN_TTL_MS }
  return { request, token: p.token, state: '', keepMs: 0 }
}

export type OrderBatcher = ReturnType<typeof createOrderBatcher>

function groupBy<T, K>(values: T[], keyOf: (value: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>()
  for (const value of values) {
    const group = groups.get(keyOf(value))
    if (group) group.push(value)
    else groups.set(keyOf(value), [value])
  }
  return groups
}
