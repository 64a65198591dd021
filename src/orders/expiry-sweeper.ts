import type pg from 'pg'
import { withTransaction } from '../db/transaction.js'
import type { Metrics } from '../metrics.js'
import { releaseOrdersStock, type ReleaseHooks } from './order-release.js'
import { expireDueOrders } from './orders.repository.js'

/**
 * Expires up to `batchSize` reservations whose time is up and gives their stock back, in one
 * transaction. Safe to run from several processes at once: each order is expired, and its stock
 * released, by exactly one of them (see expireDueOrders). Returns how many it expired.
 */
export async function sweepExpiredReservations(
  primary: pg.Pool,
  metrics: Metrics,
  hooks: ReleaseHooks,
  batchSize = 500,
): Promise<number> {
  const expired = await withTransaction(primary, async (tx) => {
    const orders = await expireDueOrders(tx, batchSize)
    await releaseOrdersStock(tx, orders, hooks)
    return orders
  })
  if (expired.length > 0) await hooks.afterCommit?.(expired)
  metrics.reservationsExpired.inc(expired.length)
  metrics.ordersTotal.inc({ status: 'expired' }, expired.length)
  return expired.length
}
