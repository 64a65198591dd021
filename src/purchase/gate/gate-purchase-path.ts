import type { Config } from '../../config.js'
import type { Db } from '../../db/pool.js'
import {
  type AppError,
  IdempotencyKeyInUseError,
  IdempotencyKeyReusedError,
  IdempotentReplayError,
  NotAdmittedError,
  NotFoundError,
  PerUserLimitError,
  RateLimitedError,
  SaleNotActiveError,
  SaleUnavailableError,
  SoldOutError,
} from '../../errors.js'
import {
  finishedState,
  KEEP_MS,
  LOCK_TTL_MS,
  VERIFY_ROUNDS,
  savedAnswer,
  savedAnswerOr,
  type IdempotentRequest,
} from '../../idempotency/idempotency.js'
import type { Log } from '../../log.js'
import type { Metrics } from '../../metrics.js'
import type { PurchasePath, PurchaseRequest, StoredAnswer } from '../purchase-path.js'
import { rebuildGateFromPostgres } from './gate-rebuild.js'
import { createOrderBatcher } from './order-batcher.js'
import { createSoldOutMemo, MAX_SALES_KEPT } from '../purchase-path.js'
import type { Admission, GateRequest, StockGate } from './stock-gate.js'

/** How long a worker answers SOLD_OUT from memory after the gate said so. */
const SOLD_OUT_MEMO_MS = 250

/**
 * The redis-gate strategy. One Lua script in Redis (gate-purchase.lua) decides a purchase: its
 * Idempotency-Key, its rate limits, the sale window, the per-user limit and the stock, and answers most
 * buyers on its own (sold out, not open, over a limit, a replay); an admitted buyer holds a reservation
 * token until its order is written in a batch, and gets the order when that batch commits. Postgres
 * keeps the last word: the batch's UPDATE, guarded by the row's CHECK. The reconciler
 * (./reconciler.ts, in the jobs process) releases tokens whose worker died and rebuilds a gate Redis lost.
 */
export function createGatePurchasePath(deps: {
  db: Db
  gate: StockGate
  config: Config
  metrics: Metrics
  log: Pick<Log, 'warn'>
}): PurchasePath {
  const { db, gate, config } = deps
  const soldOut = createSoldOutMemo(SOLD_OUT_MEMO_MS)
  const batcher = createOrderBatcher({
    db,
    gate,
    metrics: deps.metrics,
    log: deps.log,
    reservationTtlSeconds: config.RESERVATION_TTL_SECONDS,
    maxBatch: config.ORDER_BATCH_MAX,
    maxWaitMs: config.ORDER_BATCH_WAIT_MS,
    maxConcurrent: config.ORDER_BATCH_CONCURRENCY,
    statementTimeoutMs: config.DB_STATEMENT_TIMEOUT_MS,
  })

  // Concurrency: one rebuild per sale at a time on this worker (single flight). The buyers who find the
  // gate missing meanwhile wait for that one: after a Redis restart under a big sale, each worker queues
  // one session on the hot stock row, not one per waiting buyer (each holding a pooled connection).
  const rebuilding = new Map<number, ReturnType<typeof rebuildGateFromPostgres>>()
  function rebuildOnce(saleId: number): ReturnType<typeof rebuildGateFromPostgres> {
    let pending = rebuilding.get(saleId)
    if (!pending) {
      pending = rebuildGateFromPostgres(db.primary, gate, saleId, deps.metrics).finally(() =>
        rebuilding.delete(saleId),
      )
      rebuilding.set(saleId, pending)
    }
    return pending
  }

  /**
   * Asks the gate; a gate that is missing or stale is rebuilt from Postgres first, and asked once more
   * (without counting the rate limits twice).
   * Concurrency: fail closed. Without a gate fenced to this Redis server nobody is admitted (no gate
   * must never mean unlimited stock, and a stale one may offer units Postgres no longer has). Many
   * workers rebuild at once after a restart (one rebuild each: rebuildOnce); one builds, the others
   * find it current. A gate that is still not there after that (Redis restarted again, Postgres away)
   * answers 503.
   */
  async function decideFenced(request: GateRequest): Promise<Admission> {
    const first = await gate.decide(request)
    if (first.outcome !== 'gate_missing') return first
    const rebuilt = await rebuildOnce(request.saleId).catch((err: Error) => {
      deps.log.warn({ err, saleId: request.saleId }, 'could not rebuild the gate; the reconciler will retry')
      return 'failed' as const
    })
    if (rebuilt === 'no_sale') throw new NotFoundError(`sale ${request.saleId}`)
    if (rebuilt === 'built' || rebuilt === 'current') {
      const second = await gate.decide({ ...request, limits: undefined })
      if (second.outcome !== 'gate_missing') return second
    }
    throw new SaleUnavailableError()
  }

  // A final refusal's status and body (as the error handler sends them) are the same for every buyer of
  // a sale: made once per sale on this worker, not three errors and three JSON texts per purchase (for
  // at most MAX_SALES_KEPT sales, the oldest going first).
  const refusalBodies = new Map<number, { status: number; body: string }[]>()
  function refusalsOf(saleId: number, request: IdempotentRequest) {
    let bodies = refusalBodies.get(saleId)
    if (!bodies) {
      bodies = [
        new SoldOutError(saleId),
        new SaleNotActiveError(saleId, 'upcoming'),
        new SaleNotActiveError(saleId, 'ended'),
      ].map((error: AppError) => ({
        status: error.statusCode,
        body: JSON.stringify({ code: error.code, message: error.message }),
      }))
      if (refusalBodies.size >= MAX_SALES_KEPT) refusalBodies.delete(refusalBodies.keys().next().value!)
      refusalBodies.set(saleId, bodies)
    }
    const [soldOut, notStarted, ended] = bodies.map(({ status, body }) =>
      finishedState(request, '', status, body),
    )
    return { soldOut: soldOut!, notStarted: notStarted!, ended: ended! }
  }

  /**
   * Postgres' saved answer for a key Redis does not know (it forgot it, or the attempt ended 5xx),
   * stored back in Redis; null when Postgres has none. If storing fails, the next attempt asks again.
   */
  async function answerFromPostgres(
    saleId: number,
    request: IdempotentRequest,
  ): Promise<StoredAnswer | null> {
    const saved = await savedAnswer(db.primary, request)
    if (!saved) return null
    const state = finishedState(request, '', saved.status, JSON.stringify(saved.body))
    await gate.recordAnswer(saleId, request, state, KEEP_MS).catch(() => undefined)
    return saved
  }

  return {
    strategy: 'redis-gate',

    async admit({ userId, saleId, quantity, key, limits, admission }: PurchaseRequest) {
      // Concurrency: backpressure. A worker whose batch queue is full refuses before the script runs,
      // so no unit is taken for a buyer whose order could not be written soon; without it the queue
      // (and every waiting buyer's latency, and the tokens held) grows without bound while Postgres lags.
      if (batcher.queued >= config.ORDER_QUEUE_MAX) {
        deps.metrics.orderQueueFull.inc()
        throw new SaleUnavailableError()
      }
      const request = key.parsed()
      const refusals = request && refusalsOf(saleId, request)
      let verified: string | undefined
      for (let round = 0; round < VERIFY_ROUNDS; round++) {
        const decision = await decideFenced({
          saleId,
          userId,
          quantity,
          limits: {
            windowMs: limits.windowMs,
            perUser: limits.perUserPerWindow,
            perSale: limits.perSalePerWindow,
          },
          ...(admission && { leaseEndsAtMs: admission.leaseEndsAtMs }),
          ...(request && {
            key: {
              request,
              lockMs: LOCK_TTL_MS,
              keepMs: KEEP_MS,
              verified,
              refusals: refusals!,
            },
          }),
        })
        switch (decision.outcome) {
          case 'admitted':
            return {
              userId,
              saleId,
              quantity,
              idempotency: request,
              token: decision.token,
              unitsLeft: decision.available,
            }
          case 'replay': {
            const state = JSON.parse(decision.stored) as { s: number; b: unknown }
            return { replay: { status: state.s, body: state.b } }
          }
          case 'verify': {
            // The key's last attempt answered 5xx: its order may have committed. Postgres decides.
            const saved = await answerFromPostgres(saleId, request!)
            if (saved) return { replay: saved }
            verified = decision.stored
            continue
          }
          case 'busy':
            throw new IdempotencyKeyInUseError()
          case 'reused':
            throw new IdempotencyKeyReusedError()
          case 'rate_limited':
            throw new RateLimitedError(decision.retryAfterMs)
          case 'not_started':
            throw new SaleNotActiveError(saleId, 'upcoming')
          case 'ended':
            throw new SaleNotActiveError(saleId, 'ended')
          case 'not_admitted':
            throw new NotAdmittedError(saleId, 'lapsed')
          case 'sold_out':
          case 'per_user_limit': {
            // Concurrency: a keyed buyer who holds units of this sale while Redis has no record of its
            // key may be retrying a purchase whose record Redis lost (evicted, flushed, a failover):
            // Postgres' saved answer is replayed, never the refusal, which would hide the order.
            // A committed order's answer is all this looks for, so one indexed read does (not the wait
            // for writers a 5xx's unknown outcome needs): in a stampede most refused buyers who already
            // hold units ask here with a new key, and the wait cost each of them a transaction.
            const refusal =
              decision.outcome === 'per_user_limit' ? new PerUserLimitError() : new SoldOutError(saleId)
            if (decision.outcome === 'sold_out' && decision.available === 0) soldOut.remember(saleId)
            if (!decision.askPostgres) throw refusal
            const answer = await savedAnswerOr(db.primary, request, refusal)
            if (!(answer instanceof IdempotentReplayError)) throw answer
            const saved = { status: answer.storedStatus, body: answer.storedBody }
            const state = finishedState(request!, '', saved.status, JSON.stringify(saved.body))
            await gate.recordAnswer(saleId, request!, state, KEEP_MS).catch(() => undefined)
            return { replay: saved }
          }
          case 'gate_missing':
            throw new SaleUnavailableError()
        }
      }
      throw new IdempotencyKeyInUseError()
    },

    purchase: ({ userId, saleId, quantity, idempotency, token }) =>
      batcher.submit({ saleId, userId, quantity, token: token!, idempotency }),

    available: (saleId) => gate.available(saleId),
    inFlight: (saleId) => gate.unitsInFlight(saleId),
    knownAnswer: (saleId) => (soldOut.knows(saleId) ? new SoldOutError(saleId) : null),

    async saleCreated(saleId) {
      await rebuildGateFromPostgres(db.primary, gate, saleId, deps.metrics)
    },

    flush: () => batcher.flush(),
  }
}
