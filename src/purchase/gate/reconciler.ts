import type { Db } from '../../db/pool.js'
import type { Metrics } from '../../metrics.js'
import { withTransaction } from '../../db/transaction.js'
import { findPendingGateReleases, findWrittenTokensAfterCommits } from './gate-outbox.repository.js'
import { findSale, listSalesToReconcile } from '../../sales/sales.repository.js'
import { rebuildGateFromPostgres } from './gate-rebuild.js'
import { applyGateReleases } from './release-to-gate.js'
import type { StockGate } from './stock-gate.js'

/** A gate release still pending this long after its COMMIT was left behind by its process. */
const PENDING_RELEASE_GRACE_MS = 2000
const PENDING_RELEASE_BATCH = 500

export interface ReconcileResult {
  saleId: number
  rebuilt: boolean
  /** Tokens past their deadline that never became an order: their units were released to the gate. */
  released: number
  /** Tokens past their deadline whose order exists: only dropped from the in-flight set. */
  dropped: number
  drift: number | null
}

/**
 * Settles reservation tokens whose batch may or may not have committed (their worker died, their
 * confirm was lost, or their COMMIT's answer was): asked once every batch of the sale that is
 * committing has ended, a token whose order exists is dropped from the in-flight set (a confirm at
 * fence 0 re-takes nothing), and the units of the others go back to the gate, exactly once
 * (gate-release-token removes the token atomically).
 */
export async function settleTokens(
  primary: Db['primary'],
  gate: StockGate,
  saleId: number,
  tokens: string[],
): Promise<{ dropped: number; released: number }> {
  const written = await withTransaction(primary, (tx) => findWrittenTokensAfterCommits(tx, saleId, tokens))
  if (written.size > 0)
    await gate.confirm(
      saleId,
      [...written].map((token) => ({ token, version: 0 })),
    )
  let released = 0
  for (const token of tokens.filter((t) => !written.has(t)))
    if (await gate.releaseToken(saleId, token)) released++
  return { dropped: written.size, released }
}

/**
 * Keeps the Redis gate honest against Postgres (invariant I3). Runs in the jobs process; every step
 * is safe when two reconcilers, or a reconciler and the workers, run at once.
 */
export function createReconciler(deps: { db: Pick<Db, 'primary'>; gate: StockGate; metrics: Metrics }) {
  const { db, gate, metrics } = deps

  async function reconcileSale(saleId: number): Promise<ReconcileResult> {
    const result: ReconcileResult = { saleId, rebuilt: false, released: 0, dropped: 0, drift: null }
    // Concurrency: a missing gate (Redis came back empty) and a stale one (built on a Redis server
    // that restarted since, maybe without its last writes) are rebuilt from Postgres, so the gate is
    // re-fenced even while nobody buys; the first buyer would otherwise do it. A current gate costs one
    // HGET here and is left alone.
    result.rebuilt = (await rebuildGateFromPostgres(db.primary, gate, saleId, metrics)) === 'built'

    // Concurrency: a token whose deadline passed belongs to a worker that died between the gate and
    // its batch (or whose confirm was lost). If its order exists, the units are sold and the token is
    // just dropped (a confirm at fence 0 re-takes nothing); if not, the units go back, exactly once
    // (gate-release-token removes the token atomically). A batch that commits after this check
    // re-takes the units in gate-confirm, so neither case double-counts.
    // Asked after every batch of the sale that is committing has ended (a COMMIT can still be running
    // on the server after its client gave up on the answer): a token is released only if no order of
    // it committed or is committing.
    const stale = await gate.tokensPastDeadline(saleId)
    if (stale.length > 0) {
      const settled = await settleTokens(db.primary, gate, saleId, stale)
      result.dropped = settled.dropped
      result.released = settled.released
      metrics.gateTokensReleased.inc(result.released)
    }

    const sale = await findSale(db.primary, saleId)
    if (sale && sale.reserved + sale.sold > sale.unitsTotal) metrics.oversell.inc({ sale: saleId })
    const snapshot = await gate.snapshot(saleId)
    if (sale && snapshot !== null) {
      result.drift = snapshot.available + snapshot.inFlight - sale.available
      metrics.stockDrift.set({ sale: saleId }, result.drift)
      repairDrift(saleId, result.drift, snapshot.inFlight)
    }
    return result
  }

  // Concurrency: a current gate that disagrees with Postgres with no token in flight (so no batch is
  // between its COMMIT and its confirm) and by the same amount on two rounds in a row is marked stale,
  // and rebuilt from Postgres (the next buyer or the next round). Once is not enough: a release that
  // committed just before the read has its Redis step still to come. A rebuild is always safe, only a
  // cost; the drift it repairs would otherwise last until the sale ends.
  const driftSeen = new Map<number, number>()
  function repairDrift(saleId: number, drift: number, inFlight: number) {
    if (drift === 0 || inFlight > 0) {
      driftSeen.delete(saleId)
      return
    }
    if (driftSeen.get(saleId) !== drift) {
      driftSeen.set(saleId, drift)
      return
    }
    driftSeen.delete(saleId)
    metrics.gateDriftRepairs.inc()
    void gate.markStale(saleId)
  }

  return {
    /**
     * Applies gate releases left pending (their process died between COMMIT and Redis, or Redis did not
     * answer) and clears their marks. Returns how many marks it cleared.
     * Concurrency: only marks older than a couple of seconds, so the releasing process, which applies
     * its own right after COMMIT, is rarely raced; when it is, or when it applied them and died before
     * clearing the marks, gate-release-order.lua counts each order once, and skips one the gate was
     * rebuilt after (its version is at or below the fence).
     */
    async applyPendingReleases(): Promise<number> {
      let applied = 0
      let batch: number
      do {
        const pending = await findPendingGateReleases(
          db.primary,
          PENDING_RELEASE_GRACE_MS,
          PENDING_RELEASE_BATCH,
        )
        batch = pending.length
        const cleared = await applyGateReleases(db.primary, gate, pending)
        applied += cleared
        // Redis did not take some: leave them for the next round rather than spin.
        if (cleared < batch) break
      } while (batch === PENDING_RELEASE_BATCH)
      return applied
    },
    reconcileSale,
    /**
     * Every sale that is open, or closed so recently that reservation tokens may still be in flight: for
     * half the time its gate keys stay after the end, so a gate is never rebuilt just as it expires.
     */
    async reconcileAll(): Promise<ReconcileResult[]> {
      const results: ReconcileResult[] = []
      for (const saleId of await listSalesToReconcile(db.primary, gate.keptAfterEndMs / 2000))
        results.push(await reconcileSale(saleId))
      return results
    },
  }
}

export type Reconciler = ReturnType<typeof createReconciler>
