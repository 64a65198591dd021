import type { Config } from '../config.js'
import type { Db } from '../db/pool.js'
import { withTransaction } from '../db/transaction.js'
import { NotFoundError, PerUserLimitError, SaleNotActiveError, SoldOutError } from '../errors.js'
import { saveResponse } from '../idempotency/idempotency.js'
import type { Metrics } from '../metrics.js'
import { insertReservedOrder } from '../orders/orders.repository.js'
import { SALE_STOCK, type RowStrategy } from '../stock/stock.repository.js'
import { countedIn, retryPolicyOf, retryStockConflicts } from '../stock/stock-retry.js'
import type { PurchasePath } from './purchase-path.js'
import { saleStatus } from './sale-status.js'
import { addUserUnitsWithinLimit, findSale } from './sales.repository.js'

/**
 * A flash-sale purchase decided in Postgres alone: one transaction reserves the sale row's units with
 * a row strategy (optimistic, pessimistic or atomic), raises the buyer's per-user units and inserts the
 * order. A lost race (version clash, lock timeout) rolls back and runs again after a backoff.
 */
export function createPostgresPurchasePath(deps: {
  db: Db
  rows: RowStrategy
  config: Config
  metrics: Metrics
}): PurchasePath {
  const { db, rows, config } = deps
  const retryPolicy = retryPolicyOf(config)

  return {
    strategy: rows.name,

    purchase: ({ userId, saleId, quantity, idempotency }) =>
      retryStockConflicts(
        retryPolicy,
        () =>
          withTransaction(db.primary, async (tx) => {
            const sale = await findSale(tx, saleId)
            if (!sale) throw new NotFoundError(`sale ${saleId}`)
            const status = saleStatus(sale, sale.available)
            if (status === 'upcoming' || status === 'ended') throw new SaleNotActiveError(saleId, status)
            if (status === 'sold_out') throw new SoldOutError(saleId)
            await rows.reserve(tx, SALE_STOCK, [{ id: saleId, quantity }])
            const within = await addUserUnitsWithinLimit(tx, saleId, sale.perUserLimit, [
              { userId, quantity },
            ])
            if (!within.has(userId)) throw new PerUserLimitError()
            const order = await insertReservedOrder(tx, {
              userId,
              saleId,
              ttlSeconds: config.RESERVATION_TTL_SECONDS,
              reservationToken: null,
              items: [{ productId: sale.productId, quantity, unitPriceCents: sale.priceCents }],
            })
            if (idempotency) await saveResponse(tx, idempotency, 201, order)
            return order
          }),
        countedIn(deps.metrics, rows.name),
      ),

    // Postgres' own count, from the primary: the replica may lag.
    available: async (saleId) => (await findSale(db.primary, saleId))?.available ?? null,
    inFlight: async () => null,
    knownAnswer: () => null,
    saleCreated: async () => {},
    flush: async () => {},
  }
}
