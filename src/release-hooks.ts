import type pg from 'pg'
import { unitsOf, type ReleaseHooks } from './orders/order-release.js'
import { markPendingGateReleases, releaseToGate } from './purchase/gate/release-to-gate.js'
import type { StockGate } from './purchase/gate/stock-gate.js'
import { releaseUserUnits } from './sales/sales.repository.js'
import type { Log } from './log.js'

/**
 * What releasing cancelled or expired orders does beyond their stock rows, wired once for the API
 * workers (cancel) and the jobs process (expiry): in the release's transaction, expired sale orders
 * give their units back to the buyer's per-user count (cancelled ones do not: ReleaseReason) and the
 * gate's releases are marked pending (the outbox); after it committed, units the gate admitted go back
 * to the gate and the marks are cleared.
 * orders/ knows neither sales/ nor purchase/gate/; this is where they meet.
 */
export function orderReleaseHooks(deps: {
  primary: pg.Pool
  gate: StockGate
  log: Pick<Log, 'warn'>
  saleChanged?: (saleId: number) => void
}): ReleaseHooks {
  return {
    // Only an expiry gives the buyer's allowance back; a cancelled order's units keep counting.
    beforeStock: (tx, orders, reason) =>
      reason === 'cancelled'
        ? Promise.resolve()
        : releaseUserUnits(
            tx,
            orders.flatMap((o) =>
              o.saleId === null ? [] : [{ saleId: o.saleId, userId: o.userId, units: unitsOf(o) }],
            ),
          ),
    afterStock: (tx, release) => markPendingGateReleases(tx, release),
    afterCommit: releaseToGate(deps),
  }
}
