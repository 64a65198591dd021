import type { Config } from '../config.js'
import { unitsOf, type OnOrdersReleased } from '../orders/order-release.js'
import type { SaleEvents } from './sale-events.js'
import type { StockGate } from './stock-gate.js'

/** Under redis-gate, units of a cancelled or expired sale order go back on sale in the gate too. */
export function giveBackToGate(config: Config, gate: StockGate, events?: SaleEvents): OnOrdersReleased {
  return async (orders) => {
    if (config.STOCK_STRATEGY !== 'redis-gate') return
    for (const order of orders) {
      if (order.saleId === null) continue
      await gate.giveBack(order.saleId, order.userId, unitsOf(order))
      events?.changed(order.saleId)
    }
  }
}
