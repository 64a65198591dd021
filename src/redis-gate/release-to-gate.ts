import type { Order } from '../orders/orders.repository.js'
import { unitsOf } from '../orders/order-release.js'
import type { StockGate } from './stock-gate.js'

/**
 * After cancelled or expired orders' release committed in Postgres: the units of those the gate
 * admitted go back on offer in the gate too. Decided per order (it has a reservation token), not by
 * this process's STOCK_STRATEGY: the units return to where they came from, whichever process releases
 * them. `saleChanged` tells the live numbers feed.
 */
export function releaseToGate(gate: StockGate, saleChanged?: (saleId: number) => void) {
  return async (orders: Order[]): Promise<void> => {
    for (const order of orders) {
      if (order.saleId === null || order.reservationToken === null) continue
      await gate.releaseOrder(order.saleId, order.userId, unitsOf(order))
      saleChanged?.(order.saleId)
    }
  }
}
