import type pg from 'pg'
import type { PoolClient } from 'pg'
import type { Queryable } from '../../db/transaction.js'
import { unitsOf, type Release } from '../../orders/order-release.js'
import {
  clearGateReleasesPending,
  markGateReleasesPending,
  type PendingGateRelease,
} from './gate-outbox.repository.js'
import type { StockGate } from './stock-gate.js'
import type { Log } from '../../log.js'

// Releases to the gate go through an outbox. The release's transaction marks each order the gate
// admitted with the stock version its release produced (orders.gate_release_version); after COMMIT
// the units go back to the gate and the mark is cleared. A process that dies in between leaves the
// mark, and the reconciler applies it (./reconciler.ts).

/**
 * The gate releases of a release: the sale orders the gate admitted (they have a reservation token),
 * decided per order, not by this process's STOCK_STRATEGY: units return to where they came from.
 */
export function gateReleasesOf(release: Release): PendingGateRelease[] {
  return release.orders.flatMap((order) =>
    order.saleId === null || order.reservationToken === null
      ? []
      : [
          {
            orderId: order.id,
            saleId: order.saleId,
            userId: order.userId,
            units: unitsOf(order),
            allowanceUnits: release.reason === 'expired' ? unitsOf(order) : 0,
            version: release.saleVersions.get(order.saleId)!,
          },
        ],
  )
}

/**
 * In the release's transaction: marks its gate releases pending.
 * Concurrency: the mark commits with the release or not at all, so a release Postgres committed can
 * never be forgotten by the gate (the process dying before its Redis call strands the units below
 * Postgres' count for good), and the version in it lets the gate tell whether it was rebuilt after
 * the release (then the units are in it already, and adding them again would count them twice).
 */
export async function markPendingGateReleases(tx: PoolClient, release: Release): Promise<void> {
  await markGateReleasesPending(tx, gateReleasesOf(release))
}

/**
 * Applies gate releases (gate-release-order.lua applies each order at most once) and clears the marks
 * of those Redis answered. Returns how many it cleared; the others stay pending for the reconciler.
 */
export async function applyGateReleases(
  db: Queryable,
  gate: StockGate,
  releases: PendingGateRelease[],
): Promise<number> {
  const answered = await Promise.all(
    releases.map((r) =>
      gate.releaseOrder(r).then(
        () => r.orderId,
        () => null,
      ),
    ),
  )
  const done = answered.filter((id) => id !== null)
  await clearGateReleasesPending(db, done)
  return done.length
}

/**
 * After cancelled or expired orders' release committed in Postgres: the units of those the gate
 * admitted go back on offer in the gate too. A failure here does not fail the cancel or the sweep (the
 * release is committed): the marks stay, and the reconciler applies them. `saleChanged` tells the
 * live numbers feed.
 */
export function releaseToGate(deps: {
  primary: pg.Pool
  gate: StockGate
  log: Pick<Log, 'warn'>
  saleChanged?: (saleId: number) => void
}) {
  return async (release: Release): Promise<void> => {
    const pending = gateReleasesOf(release)
    if (pending.length === 0) return
    try {
      const applied = await applyGateReleases(deps.primary, deps.gate, pending)
      if (applied < pending.length)
        deps.log.warn({ left: pending.length - applied }, 'gate releases left for the reconciler')
    } catch (err) {
      deps.log.warn({ err }, 'gate releases left for the reconciler')
    }
    for (const saleId of new Set(pending.map((p) => p.saleId))) deps.saleChanged?.(saleId)
  }
}
