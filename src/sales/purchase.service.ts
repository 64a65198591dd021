import type { Config } from '../config.js'
import type { AppError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import type { Order } from '../orders/order.js'
import type { RateLimiter } from '../rate-limit/rate-limiter.js'
import type { Purchase, PurchasePath } from './purchase-path.js'

/**
 * The flash-sale purchase use case: rate limits shared by every worker, then the purchase path that
 * src/app.ts chose (the Redis gate or a Postgres row strategy), counted in purchases_total.
 */
export function createPurchases(deps: {
  path: PurchasePath
  config: Config
  rateLimiter: RateLimiter
  metrics: Metrics
  /** Tells the live-numbers feed that a sale's numbers moved. */
  saleChanged(saleId: number): void
}) {
  const { path, config, rateLimiter, metrics } = deps

  return {
    /**
     * The answer this worker already knows (a sale it knows is sold out), counted like any other;
     * null when the request must run. The purchase route answers with it before any other work.
     */
    answerFromMemory(saleId: number): AppError | null {
      const known = path.knownAnswer(saleId)
      if (known) metrics.purchases.inc({ outcome: known.code })
      return known
    },

    async purchase(purchase: Purchase): Promise<Order> {
      try {
        await rateLimiter.check([
          { scope: `user:${purchase.userId}`, perWindow: config.RATE_LIMIT_USER_PER_SECOND },
          { scope: `sale:${purchase.saleId}`, perWindow: config.RATE_LIMIT_SALE_PER_SECOND },
        ])
        const order = await path.purchase(purchase)
        deps.saleChanged(purchase.saleId)
        metrics.purchases.inc({ outcome: 'reserved' })
        metrics.ordersTotal.inc({ status: 'reserved' })
        return order
      } catch (err) {
        metrics.purchases.inc({ outcome: err instanceof Error && 'code' in err ? String(err.code) : 'error' })
        throw err
      }
    },
  }
}

export type Purchases = ReturnType<typeof createPurchases>
