import type pg from 'pg'
import { withTransaction } from '../db/transaction.js'
import type { Metrics } from '../metrics.js'
import { releaseReserved, type StockLine, type StockTable } from '../stock/stock.js'
import { expireDueOrders } from './orders.repository.js'
import { stockOf } from './orders.service.js'

/**
 * Expires up to `batchSize` reservations whose time is up and gives their stock back, in one
 * transaction. Safe to run from several processes at once: each order is expired, and its stock
 * released, by exactly one of them (see expireDueOrders). Returns how many it expired.
 */
export async function sweepExpiredReservations(
  primary: pg.Pool,
  metrics: Metrics,
  batchSize = 500,
): Promise<number> {
  const expired = await withTransaction(primary, async (tx) => {
    const orders = await expireDueOrders(tx, batchSize)
    // Concurrency: release the whole batch as one sum per stock row, in key order. Releasing order by
    // order would lock rows in expiry order, and two sweepers (or a sweeper and a checkout) taking
    // the same rows in different orders could deadlock.
    for (const { stock, lines } of sumPerStockRow(orders.map(stockOf))) {
      await releaseReserved(tx, stock, lines)
    }
    return orders
  })
  metrics.reservationsExpired.inc(expired.length)
  metrics.ordersTotal.inc({ status: 'expired' }, expired.length)
  return expired.length
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
