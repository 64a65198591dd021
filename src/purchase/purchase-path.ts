import type { StockStrategyName } from '../config.js'
import type { AppError } from '../errors.js'
import type { IdempotentRequest } from '../idempotency/idempotency.js'
import type { Order } from '../orders/order.js'
import type { SaleStock } from '../sales/sales.service.js'

/** One buyer's flash-sale purchase, after authentication and rate limits. */
export interface Purchase {
  userId: string
  saleId: number
  quantity: number
  idempotency: IdempotentRequest | null
}

/**
 * The seam between "a buyer wants units of a sale" and how stock is decided. Two implementations,
 * one picked by src/app.ts from STOCK_STRATEGY:
 * - the Postgres path (src/purchase/postgres/postgres-purchase-path.ts): one transaction per purchase, reserving
 *   the sale's row with a row strategy (optimistic, pessimistic or atomic);
 * - the gate path (src/purchase/gate/): a Lua gate in Redis admits or refuses each buyer, and admitted
 *   buyers' orders are written to Postgres in batches.
 * Nothing outside src/app.ts asks which one runs.
 */
export interface PurchasePath extends SaleStock {
  /** Which stock strategy decides: metrics and the audit name it. */
  readonly strategy: StockStrategyName
  /** Reserves the units and returns the reserved order; throws the named error that says why not. */
  purchase(purchase: Purchase): Promise<Order>
  /** Units on offer as this path counts them right now (the gate, or Postgres' row); null when unknown. */
  available(saleId: number): Promise<number | null>
  /** Units admitted but not yet written as orders; null on a path that has no such state. */
  inFlight(saleId: number): Promise<number | null>
  /** An answer this worker knows without asking anyone (a sale it knows is sold out), or null. */
  knownAnswer(saleId: number): AppError | null
  /** A sale was just created: the path prepares what it needs (the gate path builds the gate). */
  saleCreated(saleId: number): Promise<void>
  /** Writes what this worker has accepted; a stopping worker calls it before its pools close. */
  flush(): Promise<void>
}
