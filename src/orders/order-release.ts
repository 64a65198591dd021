import type { PoolClient } from 'pg'
import {
  PRODUCT_STOCK,
  SALE_STOCK,
  releaseReserved,
  type StockLine,
  type StockTable,
} from '../stock/stock.repository.js'
import type { Order } from './orders.repository.js'

/**
 * What releasing orders means beyond their stock rows, for the modules that own the rest: inside the
 * release's transaction (a sale order's per-user units, in src/sales/), and after it committed (units
 * the Redis gate admitted go back to the gate, in src/redis-gate/).
 */
export interface ReleaseHooks {
  inTransaction?(tx: PoolClient, orders: Order[]): Promise<void>
  afterCommit?(orders: Order[]): Promise<void>
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
 * transaction, after the inTransaction hook (a sale's per-user units).
 * Concurrency: the stock rows come last, and in key order, as one sum per row. The order batcher
 * raises per-user units first and updates the sale's stock row last, just before COMMIT; a release
 * that took the stock row first and the per-user rows after would lock the same rows in the opposite
 * order, and under a stampede with reservations expiring the two deadlock (Postgres aborts one of them
 * after deadlock_timeout: the sweep fails, or a whole batch of buyers gets 503). Last also means the
 * hot stock row is held only for the end of the transaction.
 */
export async function releaseOrdersStock(
  tx: PoolClient,
  orders: Order[],
  hooks: ReleaseHooks,
): Promise<void> {
  await hooks.inTransaction?.(tx, orders)
  for (const { stock, lines } of sumPerStockRow(orders.map(stockOf))) {
    await releaseReserved(tx, stock, lines)
  }
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
