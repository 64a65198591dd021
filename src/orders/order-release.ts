import type { PoolClient } from 'pg'
import {
  PRODUCT_STOCK,
  SALE_STOCK,
  releaseReserved,
  type StockLine,
  type StockTable,
} from '../stock/stock.repository.js'
import type { Order, StoredOrder } from './order.js'

/**
 * Why orders give their stock back. Units of a sale order that expired count toward the buyer's
 * per-user limit no more; units of one the buyer cancelled still do (docs/security.md: a buyer could
 * otherwise hold a unit for ever by cancelling and buying again just before each expiry).
 */
export type ReleaseReason = 'cancelled' | 'expired'

/** Orders whose stock one transaction released, and the version each sale's stock row reached in it. */
export interface Release {
  /** As their rows hold them: a hook may need the gate's reservation token. */
  orders: StoredOrder[]
  reason: ReleaseReason
  /** flash_sale_stock.version after this release, by sale id (the gate's outbox records it). */
  saleVersions: ReadonlyMap<number, number>
}

/**
 * What releasing orders means beyond their stock rows, for the modules that own the rest: inside the
 * release's transaction, before the stock rows (a sale order's per-user units, in src/sales/) and after
 * them (the gate's outbox mark, which needs the sale row's new version, in src/purchase/gate/); and after
 * it committed (units the Redis gate admitted go back to the gate).
 */
export interface ReleaseHooks {
  beforeStock?(tx: PoolClient, orders: StoredOrder[], reason: ReleaseReason): Promise<void>
  afterStock?(tx: PoolClient, release: Release): Promise<void>
  afterCommit?(release: Release): Promise<void>
}

export const unitsOf = (order: Order) => order.items.reduce((sum, item) => sum + item.quantity, 0)

/** Where an order's units live: the sale's own stock row, or each product's inventory row. */
export function stockOf(order: Order): { stock: StockTable; lines: StockLine[] } {
  if (order.saleId !== null) {
    return { stock: SALE_STOCK, lines: [{ id: order.saleId, quantity: unitsOf(order) }] }
  }
  return {
    stock: PRODUCT_STOCK,
    lines: order.items.map((item) => ({ id: item.productId, quantity: item.quantity })),
  }
}

/**
 * Gives the stock of cancelled or expired orders back (reserved -> available), inside the caller's
 * transaction: first the beforeStock hook (a sale's per-user units), then the stock rows, one sum per
 * row in key order, then the afterStock hook with the versions the sale rows reached. The caller hands
 * the result to afterCommit.
 * Concurrency: the stock rows come after the per-user rows, as in the order batcher, which raises
 * per-user units first and updates the sale's stock row last, just before COMMIT. A release that took
 * the stock row first and the per-user rows after would lock the same rows in the opposite order, and
 * under a stampede with reservations expiring the two deadlock (Postgres aborts one of them after
 * deadlock_timeout: the sweep fails, or a whole batch of buyers gets 503). One sum per row in key order
 * keeps two releasers (or a release and a checkout) from locking stock rows in different orders.
 */
export async function releaseOrdersStock(
  tx: PoolClient,
  orders: StoredOrder[],
  reason: ReleaseReason,
  hooks: ReleaseHooks,
): Promise<Release> {
  await hooks.beforeStock?.(tx, orders, reason)
  const saleVersions = new Map<number, number>()
  for (const { stock, lines } of sumPerStockRow(orders.map(stockOf))) {
    const versions = await releaseReserved(tx, stock, lines)
    if (stock === SALE_STOCK) for (const [saleId, version] of versions) saleVersions.set(saleId, version)
  }
  const release = { orders, reason, saleVersions }
  await hooks.afterStock?.(tx, release)
  return release
}

function sumPerStockRow(parts: { stock: StockTable; lines: StockLine[] }[]) {
  const byTable = new Map<StockTable, Map<number, number>>()
  for (const { stock, lines } of parts) {
    const sums = byTable.get(stock) ?? new Map<number, number>()
    for (const line of lines) sums.set(line.id, (sums.get(line.id) ?? 0) + line.quantity)
    byTable.set(stock, sums)
  }
  return [...byTable].map(([stock, sums]) => ({
    stock,
    lines: [...sums].map(([id, quantity]) => ({ id, quantity })),
  }))
}
