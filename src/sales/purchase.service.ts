import type { Config } from '../config.js'
import { withTransaction } from '../db/transaction.js'
import {
  NotFoundError,
  PerUserLimitError,
  SaleNotActiveError,
  SaleUnavailableError,
  SoldOutError,
} from '../errors.js'
import type { IdempotentRequest } from '../idempotency/idempotency.plugin.js'
import type { Metrics } from '../metrics.js'
import { insertReservedOrder, type Order } from '../orders/orders.repository.js'
import type { Db } from '../plugins/postgres.plugin.js'
import type { RateLimiter } from '../rate-limit/rate-limiter.js'
import { SALE_STOCK, type ReserveStock } from '../stock/stock.js'
import { countedIn, retryPolicyOf, retryStockConflicts } from '../stock/stock-retry.js'
import type { OrderBatcher } from './order-batcher.js'
import { saleStatus } from './sale-status.js'
import { addUserUnitsWithinLimit, findSale } from './sales.repository.js'
import type { StockGate } from './stock-gate.js'

export interface PurchaseDeps {
  db: Db
  config: Config
  gate: StockGate
  batcher: OrderBatcher
  reserveStock: ReserveStock
  rateLimiter: RateLimiter
  metrics: Metrics
  /** Rebuilds a missing gate from Postgres (safe to call often: it builds only if missing). */
  rebuildGate(saleId: number): Promise<boolean>
  /** Tells the live-numbers feed that a sale's numbers moved. */
  saleChanged(saleId: number): void
}

/** How long a worker answers SOLD_OUT from memory after the gate said so. */
const SOLD_OUT_MEMO_MS = 250

export function createPurchases(deps: PurchaseDeps) {
  const { db, config, gate, batcher, reserveStock, rateLimiter, metrics } = deps
  const strategy = config.STOCK_STRATEGY
  // Most of a stampede's requests arrive after the last unit is gone. Once the gate said SOLD_OUT,
  // this worker answers the same for SOLD_OUT_MEMO_MS without asking the gate again. A unit given back
  // meanwhile (a cancelled order) is offered again at most that much later; like a sale page's
  // remaining count, the answer may be a few hundred milliseconds old, and it can never oversell.
  const soldOutUntil = new Map<number, number>()

  /**
   * The flash-sale fast path. The gate answers most buyers (sold out, closed, over the limit) from
   * Redis alone; an admitted buyer waits for its batch to commit and gets the order.
   */
  async function viaGate(
    userId: string,
    saleId: number,
    quantity: number,
    idempotency: IdempotentRequest | null,
  ) {
    const admission = await gate.admit(saleId, userId, quantity)
    switch (admission.outcome) {
      case 'admitted':
        deps.saleChanged(saleId)
        return batcher.submit({ saleId, userId, quantity, token: admission.token, idempotency })
      case 'sold_out':
        if (admission.remaining === 0) soldOutUntil.set(saleId, Date.now() + SOLD_OUT_MEMO_MS)
        throw new SoldOutError(saleId)
      case 'not_started':
        throw new SaleNotActiveError(saleId, 'upcoming')
      case 'ended':
        throw new SaleNotActiveError(saleId, 'ended')
      case 'per_user_limit':
        throw new PerUserLimitError()
      case 'gate_missing':
        // Fail closed: no gate means Redis lost it; never sell on without one. Rebuild it from Postgres.
        if (!(await findSale(db.primary, saleId))) throw new NotFoundError(`sale ${saleId}`)
        await deps.rebuildGate(saleId).catch(() => false)
        throw new SaleUnavailableError()
    }
  }

  /** The same purchase decided in Postgres alone, with the configured stock strategy, for comparison. */
  async function viaPostgres(
    userId: string,
    saleId: number,
    quantity: number,
    idempotency: IdempotentRequest | null,
  ): Promise<Order> {
    const order = await retryStockConflicts(
      retryPolicyOf(config),
      () =>
        withTransaction(db.primary, async (tx) => {
          const sale = await findSale(tx, saleId)
          if (!sale) throw new NotFoundError(`sale ${saleId}`)
          const status = saleStatus(sale, sale.available)
          if (status === 'upcoming' || status === 'ended') throw new SaleNotActiveError(saleId, status)
          if (status === 'sold_out') throw new SoldOutError(saleId)
          await reserveStock(tx, SALE_STOCK, [{ id: saleId, quantity }])
          const within = await addUserUnitsWithinLimit(tx, saleId, sale.perUserLimit, [{ userId, quantity }])
          if (!within.has(userId)) throw new PerUserLimitError()
          const order = await insertReservedOrder(tx, {
            userId,
            saleId,
            ttlSeconds: config.RESERVATION_TTL_SECONDS,
            reservationToken: null,
            items: [{ productId: sale.productId, quantity, unitPriceCents: sale.priceCents }],
          })
          await idempotency?.saveWithin(tx, 201, order)
          return order
        }),
      countedIn(metrics, strategy),
    )
    deps.saleChanged(saleId)
    return order
  }

  return {
    /**
     * SOLD_OUT when this worker heard it from the gate less than SOLD_OUT_MEMO_MS ago, else null. The
     * route answers such a request before any other work (src/sales/sales.routes.ts).
     */
    knownSoldOut(saleId: number): SoldOutError | null {
      if ((soldOutUntil.get(saleId) ?? 0) <= Date.now()) return null
      metrics.purchases.inc({ outcome: 'SOLD_OUT' })
      return new SoldOutError(saleId)
    },

    async purchase(userId: string, saleId: number, quantity: number, idempotency: IdempotentRequest | null) {
      try {
        await rateLimiter.check([
          { scope: `user:${userId}`, perWindow: config.RATE_LIMIT_USER_PER_SECOND },
          { scope: `sale:${saleId}`, perWindow: config.RATE_LIMIT_SALE_PER_SECOND },
        ])
        const order =
          strategy === 'redis-gate'
            ? await viaGate(userId, saleId, quantity, idempotency)
            : await viaPostgres(userId, saleId, quantity, idempotency)
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
