import type { TokenClaims } from '../auth/token-claims.js'
import type { Config } from '../config.js'
import { RegisteredOnlyError, type AppError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import type { Order } from '../orders/order.js'
import type { RateLimiter } from '../rate-limit/rate-limiter.js'
import type { Sales } from '../sales/sales.service.js'
import type { PurchaseKey, PurchaseLimits, PurchasePath, StoredAnswer } from './purchase-path.js'

/** A purchase's answer: the reserved order, or the answer the key already holds. */
export type PurchaseAnswer = { order: Order } | { replay: StoredAnswer }

/**
 * The flash-sale purchase, one story from the buyer's request to the answer. The stock decision and
 * the order's write are the path's, which src/purchase-wiring.ts chose once (./purchase-path.ts): the Redis gate
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

  async function purchase(
    buyer: TokenClaims,
    saleId: number,
    quantity: number,
    key: PurchaseKey,
  ): Promise<PurchaseAnswer> {
    // 1. Eligibility: a sale for registered accounts refuses guests, before any key or stock is taken.
    // A registered buyer costs nothing here; a guest, a lookup of the sale's cached facts.
    if (buyer.guest && (await sales.isRegisteredOnly(saleId))) throw new RegisteredOnlyError(saleId)

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
      })
      if ('replay' in admitted) return admitted
      // 4. Decide and write: the path writes the order with its saved answer (the Postgres path reserves
      // the units in that transaction; the gate path's batch commits the units the gate reserved).
      const order = await path.purchase(admitted)
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
