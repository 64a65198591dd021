import type pg from 'pg'
import { withTransaction } from '../../db/transaction.js'
import { lockSaleForGate } from '../../sales/sales.repository.js'
import type { Metrics } from '../../metrics.js'
import type { GateBuild, StockGate } from './stock-gate.js'

/**
 * Builds a sale's gate from Postgres unless a current one exists: for a new sale, a gate Redis lost
 * (it came back empty), and a stale gate (built on a Redis server that restarted since, which may have
 * lost its last writes: the gate may offer units Postgres no longer has, and miss tokens).
 * Concurrency: the sale row stays locked while the gate is written, so no batch commits in between
 * and the gate starts exactly at Postgres' count; it records the row's version as its fence (see
 * gate-confirm.lua) and the server's run id. A stale gate is replaced whole in one script, a current
 * one left alone, so every worker may call this at once and one builds; the others return after one
 * Redis read, without queueing on the hot row's lock.
 */
export async function rebuildGateFromPostgres(
  primary: pg.Pool,
  gate: StockGate,
  saleId: number,
  metrics?: Pick<Metrics, 'gateRebuilds'>,
): Promise<GateBuild | 'no_sale'> {
  // Without the server's run id (Redis away) a gate could not be fenced: do not lock the row for it.
  if ((await gate.serverRunId()) === null) return 'redis_unknown'
  if (await gate.isCurrent(saleId)) return 'current'
  const outcome = await withTransaction(primary, async (tx): Promise<GateBuild | 'no_sale'> => {
    const state = await lockSaleForGate(tx, saleId)
    if (!state) return 'no_sale'
    return gate.build(saleId, {
      available: state.sale.available,
      startsAt: state.sale.startsAt,
      endsAt: state.sale.endsAt,
      perUserLimit: state.sale.perUserLimit,
      version: state.sale.version,
      usersHolding: state.usersHolding,
    })
  })
  // Counted once the row was locked: how many sessions a rebuild queues on the hot row, and how many built.
  metrics?.gateRebuilds.inc({ sale: saleId, outcome })
  return outcome
}
