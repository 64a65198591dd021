import { unitsOf, type OnOrdersReleased } from '../orders/order-release.js'
import type { SaleEvents } from './sale-events.js'
import type { StockGate } from './stock-gate.js'

/**
 * Units of a cancelled or expired order that the Redis gate admitted go back on sale in the gate too.
 * Decided per order (it has a reservation token), not by this process's STOCK_STRATEGY: the units
 * return to where they came from, whichever process releases them.
 */
export function giveBackToGate(gate: StockGate, events?: SaleEvents): OnOrdersReleased {
  return async (orders) => {
    for (const order of orders) {
      if (order.saleId === null || order.reservationToken === null) continue
      await gate.giveBack(order.saleId, order.userId, unitsOf(order))
      events?.changed(order.saleId)
    }
  }
}
