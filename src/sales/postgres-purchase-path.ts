import type { Config } from '../config.js'
import type { Db } from '../db/pool.js'
import { NotFoundError, PerUserLimitError, SaleNotActiveError, SoldOutError } from '../errors.js'
import { saveResponse } from '../idempotency/idempotency.js'
import { insertReservedOrder } from '../orders/orders.repository.js'
import { SALE_STOCK, type RowStrategy } from '../stock/stock.repository.js'
import type { PurchasePath } from './purchase-path.js'
import { saleStatus } from './sale.js'
import { addUserUnitsWithinLimit, findSale } from './sales.repository.js'

/**
 * A flash-sale purchase decided in Postgres alone, in one transaction: raise the buyer's per-user
 * units, insert the order and its idempotent answer, and last reserve the sale row's units with a row
 * strategy (optimistic, pessimistic or atomic), so the hot row is held only for that statement and
 * COMMIT. A reservation that fails rolls everything back: the order never existed. A COMMIT whose
 * answer is lost is CommitOutcomeUnknownError (503): the order and its saved answer committed together
 * or not at all, so a retry with the same key gets the order if it exists and runs afresh if not.
 */
export function createPostgresPurchasePath(deps: {
  db: Db
  rows: RowStrategy
  config: Config
}): PurchasePath {
  const { db, rows, config } = deps

  return {
    strategy: rows.name,

    purchase: ({ userId, saleId, quantity, idempotency }) =>
      rows.reserveLast(db.primary, SALE_STOCK, async (tx) => {
        // Read without a lock: most of a stampede arrives after the sell-out and ends here.
        const sale = await findSale(tx, saleId)
        if (!sale) throw new NotFoundError(`sale ${saleId}`)
        const status = saleStatus(sale, sale.available)
        if (status === 'upcoming' || status === 'ended') throw new SaleNotActiveError(saleId, status)
        if (status === 'sold_out') throw new SoldOutError(saleId)
        const within = await addUserUnitsWithinLimit(tx, saleId, sale.perUserLimit, [{ userId, quantity }])
        if (!within.has(userId)) throw new PerUserLimitError()
        const order = await insertReservedOrder(tx, {
          userId,
          saleId,
          ttlSeconds: config.RESERVATION_TTL_SECONDS,
          reservationToken: null,
          items: [{ productId: sale.productId, quantity, unitPriceCents: sale.priceCents }],
        })
        if (idempotency) await saveResponse(tx, idempotency, 201, order)
        return { lines: [{ id: saleId, quantity }], result: order }
      }),

    // Postgres' own count, from the primary: the replica may lag.
    available: async (saleId) => (await findSale(db.primary, saleId))?.available ?? null,
    inFlight: async () => null,
    knownAnswer: () => null,
    saleCreated: async () => {},
    flush: async () => {},
  }
}
