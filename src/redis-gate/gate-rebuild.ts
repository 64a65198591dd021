import type pg from 'pg'
import { withTransaction } from '../db/transaction.js'
import { lockSaleForGate } from '../sales/sales.repository.js'
import type { StockGate } from './stock-gate.js'

/**
 * Builds a sale's gate from Postgres unless it exists (a new sale, or Redis came back empty).
 * Concurrency: the sale row stays locked while the gate is written, so no batch commits in between
 * and the gate starts exactly at Postgres' count; the gate records the row's version as its fence
 * (see gate-confirm.lua). Safe to call from every worker at once: only the first builds.
 */
export async function rebuildGateFromPostgres(
  primary: pg.Pool,
  gate: StockGate,
  saleId: number,
): Promise<boolean> {
  return withTransaction(primary, async (tx) => {
    const state = await lockSaleForGate(tx, saleId)
    if (!state) return false
    return gate.build(saleId, {
      available: state.sale.available,
      startsAt: state.sale.startsAt,
      endsAt: state.sale.endsAt,
      perUserLimit: state.sale.perUserLimit,
      version: state.sale.version,
      usersHolding: state.usersHolding,
    })
  })
}
