import type { Metrics } from '../metrics.js'
import type { Db } from '../plugins/postgres.plugin.js'
import { rebuildGateFromPostgres } from './gate-rebuild.js'
import { listSalesToReconcile } from './sales.repository.js'
import type { StockGate } from './stock-gate.js'

export interface ReconcileResult {
  saleId: number
  rebuilt: boolean
  /** Tokens past their deadline that never became an order: their units went back to the gate. */
  returned: number
  /** Tokens past their deadline whose order exists: only dropped from the in-flight set. */
  dropped: number
  drift: number | null
}

/**
 * Keeps the Redis gate honest against Postgres (invariant I3). Runs in the jobs process; every step
 * is safe when two reconcilers, or a reconciler and the workers, run at once.
 */
export function createReconciler(deps: { db: Pick<Db, 'primary'>; gate: StockGate; metrics: Metrics }) {
  const { db, gate, metrics } = deps

  async function reconcileSale(saleId: number): Promise<ReconcileResult> {
    const result: ReconcileResult = { saleId, rebuilt: false, returned: 0, dropped: 0, drift: null }
    // A missing gate (Redis restarted empty) is rebuilt from Postgres; until then buyers get 503.
    if ((await gate.remaining(saleId)) === null)
      result.rebuilt = await rebuildGateFromPostgres(db.primary, gate, saleId)

    // Concurrency: a token whose deadline passed belongs to a worker that died between the gate and
    // its batch. If its order exists, the units are sold and the token is just dropped; if not, the
    // units go back, exactly once (gate-release removes the token atomically). A batch that commits
    // after this check re-takes the units in gate-confirm, so neither case double-counts.
    const stale = await gate.tokensPastDeadline(saleId, Date.now())
    if (stale.length > 0) {
      const { rows } = await db.primary.query<{ reservation_token: string }>(
        'SELECT reservation_token FROM orders WHERE reservation_token = ANY($1::text[])',
        [stale],
      )
      const ordered = new Set(rows.map((row) => row.reservation_token))
      if (ordered.size > 0)
        result.dropped = await gate.confirm(saleId, 0, [...ordered]).then(() => ordered.size)
      for (const token of stale.filter((t) => !ordered.has(t))) {
        if (await gate.release(saleId, token)) result.returned++
      }
      metrics.gateTokensReturned.inc(result.returned)
    }

    const { rows } = await db.primary.query<{
      available: number
      reserved: number
      sold: number
      units_total: number
    }>('SELECT available, reserved, sold, units_total FROM flash_sales WHERE id = $1', [saleId])
    const row = rows[0]
    if (row && row.reserved + row.sold > row.units_total) metrics.oversell.inc({ sale: saleId })
    const remaining = await gate.remaining(saleId)
    if (row && remaining !== null) {
      result.drift = remaining + (await gate.unitsInFlight(saleId)) - row.available
      metrics.stockDrift.set({ sale: saleId }, result.drift)
    }
    return result
  }

  return {
    reconcileSale,
    /** Every sale that is open, or closed so recently that reservation tokens may still be in flight. */
    async reconcileAll(): Promise<ReconcileResult[]> {
      const results: ReconcileResult[] = []
      for (const saleId of await listSalesToReconcile(db.primary, 15))
        results.push(await reconcileSale(saleId))
      return results
    },
  }
}

export type Reconciler = ReturnType<typeof createReconciler>
