import type { TokenClaims } from '../auth/token-claims.js'
import type { Config } from '../config.js'
import { RegisteredOnlyError, type AppError } from '../errors.js'
import type { IdempotentRequest } from '../idempotency/idempotency.js'
import type { Metrics } from '../metrics.js'
import type { Order } from '../orders/order.js'
import type { RateLimiter } from '../rate-limit/rate-limiter.js'
import type { Sales } from '../sales/sales.service.js'
import type { PurchasePath } from './purchase-path.js'

/** An answer stored under an Idempotency-Key, sent again as it was. */
export interface StoredAnswer {
  status: number
  body: unknown
}

/**
 * The request's Idempotency-Key as the purchase sees it; the idempotency plugin hands it in
 * (`app.idempotencyKeyOf(request)`) and records the answer under it when the response is sent.
 */
export interface PurchaseKey {
  /**
   * Takes the key before any work; when `known` has an answer, records that one under the key instead
   * (and throws it). Returns a stored answer to replay, or null to go on.
   */
  take(known: () => AppError | null): Promise<StoredAnswer | null>
  /** The key once taken, so the order's transaction saves its answer too; null without a key. */
  readonly taken: IdempotentRequest | null
}

/** A purchase's answer: the reserved order, or the answer the key already holds. */
export type PurchaseAnswer = { order: Order } | { replay: StoredAnswer }

/**
 * The flash-sale purchase, one story from the buyer's request to the answer. The stock decision and
 * the order's write are the path's, which src/app.ts chose once (./purchase-path.ts): the Redis gate
 * with batched writes (./gate/), or a Postgres row strategy (./postgres/).
 */
export function createPurchases(deps: {
  path: PurchasePath
  sales: Pick<Sales, 'isRegisteredOnly'>
  config: Config
  rateLimiter: RateLimiter
  metrics: Metrics
  /** Tells the live-numbers feed that a sale's numbers moved. */
  saleChanged(saleId: number): void
}) {
  const { path, sales, config, rateLimiter, metrics } = deps

  /** An answer this worker already knows (a sale it knows is sold out), counted like any other. */
  function answerFromMemory(saleId: number): AppError | null {
    const known = path.knownAnswer(saleId)
    if (known) metrics.purchases.inc({ outcome: known.code })
    return known
  }

  async function purchase(
    buyer: TokenClaims,
    saleId: number,
    quantity: number,
    key: PurchaseKey,
  ): Promise<PurchaseAnswer> {
    // 1. Eligibility: a sale for registered accounts refuses guests, before any key or stock is taken.
    // A registered buyer costs nothing here; a guest, a lookup of the sale's cached facts.
    if (buyer.guest && (await sales.isRegisteredOnly(saleId))) throw new RegisteredOnlyError(saleId)

    // 2. Idempotency: most of a stampede arrives after the last unit, and a worker that knows the sale
    // is sold out answers at once (one Redis round trip for a keyed request, none without). Otherwise
    // the key is taken, or the answer it already holds is replayed.
    const stored = await key.take(() => answerFromMemory(saleId))
    if (stored) return { replay: stored }

    try {
      // 3. Rate limits, shared by every worker.
      await rateLimiter.check([
        { scope: `user:${buyer.sub}`, perWindow: config.RATE_LIMIT_USER_PER_SECOND },
        { scope: `sale:${saleId}`, perWindow: config.RATE_LIMIT_SALE_PER_SECOND },
      ])
      // 4. Decide and write: the path reserves the units and writes the order with its saved answer.
      const order = await path.purchase({ userId: buyer.sub, saleId, quantity, idempotency: key.taken })
      // 5. Answer.
      deps.saleChanged(saleId)
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
