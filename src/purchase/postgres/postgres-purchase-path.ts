import { randomUUID } from 'node:crypto'
import type { Config } from '../../config.js'
import type { Db } from '../../db/pool.js'
import { withTransactionEndingIn } from '../../db/transaction.js'
import { NotFoundError, SaleNotActiveError, SoldOutError } from '../../errors.js'
import { saleStatus } from '../../sales/sale.js'
import { findSale } from '../../sales/sales.repository.js'
import { SALE_STOCK, type RowStrategy } from '../../stock/stock.repository.js'
import { takeKeyThenCountLimits, type PurchasePath } from '../purchase-path.js'
import { writeSaleOrders } from '../sale-orders.js'

/**
 * A flash-sale purchase decided in Postgres alone, in one transaction this path owns: read the sale,
 * write the order with the shared writer (the answer saved, the per-user units raised, the order
 * inserted), and last reserve the sale row's units with the row strategy (optimistic, pessimistic or
 * atomic), so the hot row is held only for that statement and COMMIT. A reservation that fails rolls
 * everything back: the order never existed. A COMMIT whose answer is lost is CommitOutcomeUnknownError
 * (503): the order and its saved answer committed together or not at all, so a retry with the same key
 * gets the order if it exists and runs afresh if not.
 */
export function createPostgresPurchasePath(deps: {
  db: Db
  rows: RowStrategy
  config: Config
}): PurchasePath {
  const { db, rows, config } = deps

  return {
    strategy: rows.name,
    admit: takeKeyThenCountLimits,

    purchase: ({ userId, saleId, quantity, idempotency }) =>
      rows.run(SALE_STOCK, () =>
        withTransactionEndingIn(db.primary, async (tx) => {
          // Read without a lock: most of a stampede arrives after the sell-out and ends here.
          const sale = await findSale(tx, saleId)
          if (!sale) throw new NotFoundError(`sale ${saleId}`)
          const status = saleStatus(sale, sale.available)
          if (status === 'upcoming' || status === 'ended') throw new SaleNotActiveError(saleId, status)
          if (status === 'sold_out') throw new SoldOutError(saleId)
          const buyer = { orderId: randomUUID(), userId, quantity, idempotency, reservationToken: null }
          const answer = (await writeSaleOrders(tx, sale, [buyer], config.RESERVATION_TTL_SECONDS)).get(
            buyer,
          )!
          if ('error' in answer) throw answer.error
          const last = await rows.reserveLast(tx, SALE_STOCK, [{ id: saleId, quantity }])
          return { last, result: answer.order }
        }),
      ),

    // Postgres' own count, from the primary: the replica may lag.
    available: async (saleId) => (await findSale(db.primary, saleId))?.available ?? null,
    inFlight: async () => null,
    knownAnswer: () => null,
    saleCreated: async () => {},
    flush: async () => {},
  }
}
