import type { TokenClaims } from '../auth/token-claims.js'
import type { Config } from '../config.js'
import { RegisteredOnlyError, type AppError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import type { Order } from '../orders/order.js'
import type { RateLimiter } from '../rate-limit/rate-limiter.js'
import type { Sales } from '../sales/sales.service.js'
import type {
  PurchaseAdmission,
  PurchaseKey,
  PurchaseLimits,
  PurchasePath,
  StoredAnswer,
} from './purchase-path.js'

/** A purchase's answer: the reserved order, or the answer the key already holds. */
export type PurchaseAnswer = { order: Order } | { replay: StoredAnswer }

/**
 * The flash-sale purchase, one story from the buyer's request to the answer. The stock decision and
 * the order's write are the path's, which src/purchase-wiring.ts chose once (./purchase-path.ts): the Redis gate
 * with batched writes (./gate/), or a Postgres row strategy (./postgres/).
 */
export function createPurchases(deps: {
  path: PurchasePath
  sales: Pick<Sales, 'entryRulesOf'>
  /**
   * Checks the signed admission of a sale with a waiting room (./queue/waiting-room.ts): returns the end
   * of its lease, or throws NotAdmittedError.
   */
  admissions: { verify(token: string | undefined, saleId: number, userId: string): number }
  /** Checks a waiting-room lease on the Postgres path (the gate's script checks it on the gate path). */
  waitingRoom: { claimLease(saleId: number, userId: string, leaseEndsAtMs: number): Promise<void> }
  config: Config
  rateLimiter: RateLimiter
  metrics: Metrics
  /** Tells the live-numbers feed that a sale's numbers moved. */
  saleChanged(saleId: number): void
  /** Tells a waiting room's buyers at once that the sale took its last unit. */
  soldOut(saleId: number): void
}) {
  const { path, sales, config, rateLimiter, metrics } = deps

  /** An answer this worker already knows (a sale it knows is sold out), counted like any other. */
  function answerFromMemory(saleId: number): AppError | null {
    const known = path.knownAnswer(saleId)
    if (known) metrics.purchases.inc({ outcome: known.code })
    return known
  }

  /** The rate limits of this buyer in this sale. */
  const limitsOf = (userId: string, saleId: number): PurchaseLimits => ({
    windowMs: rateLimiter.windowMs,
    perUserPerWindow: config.RATE_LIMIT_USER_PER_SECOND,
    perSalePerWindow: config.RATE_LIMIT_SALE_PER_SECOND,
    check: () =>
      rateLimiter.check([
        { scope: `user:${userId}`, perWindow: config.RATE_LIMIT_USER_PER_SECOND },
        { scope: `sale:${saleId}`, perWindow: config.RATE_LIMIT_SALE_PER_SECOND },
      ]),
  })

  /** The buyer's turn in the sale's waiting room, its signature checked: 403 NOT_ADMITTED without one. */
  function admissionOf(userId: string, saleId: number, token: string | undefined): PurchaseAdmission {
    const leaseEndsAtMs = deps.admissions.verify(token, saleId, userId)
    return { leaseEndsAtMs, claim: () => deps.waitingRoom.claimLease(saleId, userId, leaseEndsAtMs) }
  }

  async function purchase(
    buyer: TokenClaims,
    saleId: number,
    quantity: number,
    key: PurchaseKey,
    /** The Waiting-Room-Admission header: the buyer's turn, for a sale with a waiting room. */
    admissionToken?: string,
  ): Promise<PurchaseAnswer> {
    // 1. Eligibility, before any key or stock is taken, from the sale's cached facts: a sale for registered
    // accounts refuses guests; a sale with a waiting room refuses a buyer without a signed admission for
    // this sale and this buyer (checked here without a read; its lease's end is Redis' clock's to judge).
    const rules = await sales.entryRulesOf(saleId)
    if (buyer.guest && rules.registeredOnly) throw new RegisteredOnlyError(saleId)
    const admission = rules.queue ? admissionOf(buyer.sub, saleId, admissionToken) : null

    // 2. Known answers: most of a stampede arrives after the last unit, and a worker that knows the
    // sale is sold out answers a buyer without a key at once, asking nobody. A keyed buyer goes on: its
    // key may hold an order Redis forgot, which only the next steps find.
    const known = key.parsed() ? null : answerFromMemory(saleId)
    if (known) throw known

    try {
      // 3. Idempotency and rate limits: the key is taken (or its answer replayed), and the purchase
      // counted against the per-user and per-sale limits. The gate path does both, and decides the
      // stock, in one Redis script; the Postgres path takes the key, then counts the limits.
      const admitted = await path.admit({
        userId: buyer.sub,
        saleId,
        quantity,
        key,
        limits: limitsOf(buyer.sub, saleId),
        admission,
      })
      if ('replay' in admitted) return admitted
      // 4. Decide and write: the path writes the order with its saved answer (the Postgres path reserves
      // the units in that transaction; the gate path's batch commits the units the gate reserved).
      const order = await path.purchase(admitted)
      // 5. Answer. The buyer who took a waiting room's last unit tells everyone still waiting.
      deps.saleChanged(saleId)
      if (admission && admitted.unitsLeft === 0) deps.soldOut(saleId)
      metrics.purchases.inc({ outcome: 'reserved' })
      metrics.ordersTotal.inc({ status: 'reserved' })
      return { order }
    } catch (err) {
      metrics.purchases.inc({ outcome: err instanceof Error && 'code' in err ? String(err.code) : 'error' })
      throw err
    }
  }

  return { purchase }
}

export type Purchases = ReturnType<typeof createPurchases>
