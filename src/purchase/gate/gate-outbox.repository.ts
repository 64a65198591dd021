import type { Queryable } from '../../db/transaction.js'
import { unnestColumns } from '../../db/unnest.js'

// The gate's own columns of `orders`: `reservation_token` (which admitted buyer became an order) and
// `gate_release_version` (the outbox of releases the gate has still to get back, migration 005). The
// release's transaction writes the mark; after COMMIT the gate gets the units and the mark is cleared,
// and the reconciler finishes what a process left (./release-to-gate.ts, ./reconciler.ts).

/**
 * Which of these reservation tokens of one sale became an order, asked once every batch of the sale
 * that is committing has ended. Runs in the caller's transaction, which it keeps holding a share lock
 * on the sale's stock row: a batch's stock UPDATE and COMMIT travel together and lock that row until
 * the commit has ended (even a COMMIT whose client lost the answer while it waited for a synchronous
 * standby), so the lock is only granted once they did, and their orders are then visible.
 */
export async function findWrittenTokensAfterCommits(
  tx: Queryable,
  saleId: number,
  tokens: string[],
): Promise<Set<string>> {
  await tx.query('SELECT 1 FROM flash_sale_stock WHERE sale_id = $1 FOR SHARE', [saleId])
  return findWrittenTokens(tx, tokens)
}

/** Whether a server process (a session's backend) is still running: until it ends, its transaction may. */
export async function backendRunning(db: Queryable, pid: number): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])
  return rows.length > 0
}

/** Which of these reservation tokens became an order. */
async function findWrittenTokens(db: Queryable, tokens: string[]): Promise<Set<string>> {
  const { rows } = await db.query<{ reservation_token: string }>(
    'SELECT reservation_token FROM orders WHERE reservation_token = ANY($1::text[])',
    [tokens],
  )
  return new Set(rows.map((row) => row.reservation_token))
}

/**
 * A released order's units that the Redis gate has still to get back: the outbox row of a gate release
 * (orders.gate_release_version, migration 005). `version` is the flash_sale_stock version the release
 * produced.
 */
export interface PendingGateRelease {
  orderId: string
  saleId: number
  userId: string
  units: number
  /** Units the buyer's per-user count gets back: all of them for an expired order, none for a cancelled one. */
  allowanceUnits: number
  version: number
}

/** Marks released orders whose units the gate has still to get back, in the release's transaction. */
export async function markGateReleasesPending(tx: Queryable, releases: PendingGateRelease[]): Promise<void> {
  if (releases.length === 0) return
  await tx.query(
    `UPDATE orders o SET gate_release_version = p.version
       FROM unnest($1::uuid[], $2::bigint[]) AS p (id, version)
      WHERE o.id = p.id`,
    unnestColumns(releases, (r) => [r.orderId, r.version]),
  )
}

/** The gate has these orders' units back: their release is done. */
export async function clearGateReleasesPending(db: Queryable, orderIds: string[]): Promise<void> {
  if (orderIds.length === 0) return
  await db.query(
    `UPDATE orders SET gate_release_version = NULL
      WHERE id = ANY($1::uuid[]) AND gate_release_version IS NOT NULL`,
    [orderIds],
  )
}

/** Gate releases still pending `olderThanMs` after their release committed, oldest first. */
export async function findPendingGateReleases(
  db: Queryable,
  olderThanMs: number,
  limit: number,
): Promise<PendingGateRelease[]> {
  const { rows } = await db.query<{
    id: string
    sale_id: number
    user_id: string
    units: number
    cancelled: boolean
    gate_release_version: number
  }>(
    `SELECT o.id, o.sale_id, o.user_id, o.gate_release_version, o.status = 'cancelled' AS cancelled,
            (SELECT sum(i.quantity)::int FROM order_items i WHERE i.order_id = o.id) AS units
       FROM orders o
      WHERE o.gate_release_version IS NOT NULL AND o.updated_at < now() - make_interval(secs => $1::float8 / 1000)
      ORDER BY o.updated_at
      LIMIT $2`,
    [olderThanMs, limit],
  )
  return rows.map((row) => ({
    orderId: row.id,
    saleId: row.sale_id,
    userId: row.user_id,
    units: row.units,
    allowanceUnits: row.cancelled ? 0 : row.units,
    version: row.gate_release_version,
  }))
}
