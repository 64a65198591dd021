import type { Queryable } from '../db/transaction.js'
import { numbersOf } from '../sales/sale-events.js'
import { saleStatus } from '../sales/sale.js'
import { listRecentlyStartedSales } from '../sales/sales.repository.js'
import type { DashboardSale } from './dashboard-feed.js'

/**
 * The most recently started sales with their live numbers, counted as the API counts a sale's `remaining` (and so as
 * the sale events report it): the gate's count under redis-gate, otherwise Postgres' available. Read
 * from the primary, never the replica, which may lag behind the sale.
 */
export async function readSaleProgress(
  primary: Queryable,
  /** The gate's count under redis-gate (src/purchase/gate/stock-gate.ts), null under the others. */
  gate: { available(saleId: number): Promise<number | null> } | null,
  limit: number,
): Promise<DashboardSale[]> {
  const sales = await listRecentlyStartedSales(primary, limit)
  return Promise.all(
    sales.map(async (sale) => {
      // Redis away: Postgres' count, as the API falls back to it.
      const fromGate = gate ? await gate.available(sale.id).catch(() => null) : null
      const remaining = fromGate ?? sale.available
      const status = saleStatus(sale, remaining)
      return {
        ...numbersOf({ id: sale.id, unitsTotal: sale.unitsTotal, remaining, status }),
        productName: sale.productName,
        unitsTotal: sale.unitsTotal,
      }
    }),
  )
}
