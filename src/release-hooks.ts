import { unitsOf, type ReleaseHooks } from './orders/order-release.js'
import { releaseToGate } from './redis-gate/release-to-gate.js'
import type { StockGate } from './redis-gate/stock-gate.js'
import { releaseUserUnits } from './sales/sales.repository.js'

/**
 * What releasing cancelled or expired orders does beyond their stock rows, wired once for the API
 * workers (cancel) and the jobs process (expiry): in the release's transaction, sale orders give
 * their units back to the buyer's per-user count; after it committed, units the gate admitted go back
 * to the gate. orders/ knows neither sales/ nor redis-gate/; this is where they meet.
 */
export function orderReleaseHooks(gate: StockGate, saleChanged?: (saleId: number) => void): ReleaseHooks {
  return {
    inTransaction: (tx, orders) =>
      releaseUserUnits(
        tx,
        orders.flatMap((o) =>
          o.saleId === null ? [] : [{ saleId: o.saleId, userId: o.userId, units: unitsOf(o) }],
        ),
      ),
    afterCommit: releaseToGate(gate, saleChanged),
  }
}
