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
  const release = await withTransaction(primary, async (tx) => {
    const orders = await expireDueOrders(tx, batchSize)
    return releaseOrdersStock(tx, orders, 'expired', hooks)
  })
  const expired = release.orders.length
  if (expired > 0) await hooks.afterCommit?.(release)
  metrics.reservationsExpired.inc(expired)
  metrics.ordersTotal.inc({ status: 'expired' }, expired)
  return expired
}
