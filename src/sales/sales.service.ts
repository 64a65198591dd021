import type { Config } from '../config.js'
import { withTransaction } from '../db/transaction.js'
import { InvalidSaleWindowError, NotFoundError, OutOfStockError } from '../errors.js'
import type { Db } from '../plugins/postgres.plugin.js'
import { saleStatus, type SaleStatus } from './sale-status.js'
import {
  auditSale,
  findSale,
  insertSaleAllottingStock,
  listCurrentSales,
  lockSaleForGate,
  type NewSale,
  type Sale,
} from './sales.repository.js'
import type { StockGate } from './stock-gate.js'

export interface SaleView {
  id: number
  productId: number
  productName: string
  priceCents: number
  unitsTotal: number
  perUserLimit: number
  startsAt: string
  endsAt: string
  status: SaleStatus
  /** Units still on offer. Under redis-gate it is the gate's count, otherwise Postgres' available. */
  remaining: number
}

export interface SaleAuditReport {
  saleId: number
  strategy: string
  initial: number
  available: number
  reserved: number
  sold: number
  ordersReserved: number
  ordersPaid: number
  /** The gate's count, and units admitted by the gate but not yet orders (redis-gate only). */
  gate: number | null
  inFlight: number | null
  /** gate + inFlight - available: 0 when Redis and Postgres agree (redis-gate only). */
  drift: number | null
  maxUnitsPerUser: number
  perUserLimit: number
  oversold: boolean
  violations: string[]
}

export function createSales(deps: { db: Db; config: Config; gate: StockGate }) {
  const { db, config, gate } = deps
  const usesGate = config.STOCK_STRATEGY === 'redis-gate'

  // Remaining units come from the gate (Redis) under redis-gate, and from the primary otherwise: never
  // from a long-lived cache, and never from the replica, which may lag.
  async function remainingOf(sale: Sale): Promise<number> {
    if (usesGate) {
      const remaining = await gate.remaining(sale.id)
      if (remaining !== null) return remaining
    }
    return (await findSale(db.primary, sale.id))?.available ?? 0
  }

  async function view(sale: Sale): Promise<SaleView> {
    const remaining = await remainingOf(sale)
    return {
      id: sale.id,
      productId: sale.productId,
      productName: sale.productName,
      priceCents: sale.priceCents,
      unitsTotal: sale.unitsTotal,
      perUserLimit: sale.perUserLimit,
      startsAt: sale.startsAt.toISOString(),
      endsAt: sale.endsAt.toISOString(),
      status: saleStatus(sale, remaining),
      remaining,
    }
  }

  /**
   * Builds the sale's gate from Postgres unless it exists. The sale row stays locked while the gate
   * is written, so no batch commits in between and the gate starts exactly at Postgres' count.
   */
  async function rebuildGate(saleId: number): Promise<boolean> {
    return withTransaction(db.primary, async (tx) => {
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

  return {
    rebuildGate,

    async createSale(input: NewSale): Promise<SaleView> {
      if (input.endsAt <= input.startsAt || input.endsAt.getTime() <= Date.now())
        throw new InvalidSaleWindowError()
      const saleId = await withTransaction(db.primary, async (tx) => {
        const product = await tx.query('SELECT 1 FROM products WHERE id = $1', [input.productId])
        if (product.rowCount === 0) throw new NotFoundError(`product ${input.productId}`)
        const id = await insertSaleAllottingStock(tx, input)
        if (id === undefined) throw new OutOfStockError(input.productId)
        return id
      })
      await rebuildGate(saleId)
      return view((await findSale(db.primary, saleId))!)
    },

    async getSale(saleId: number): Promise<SaleView> {
      // The sale's fixed facts may come from the replica; its remaining units never do.
      const sale = (await findSale(db.replica, saleId)) ?? (await findSale(db.primary, saleId))
      if (!sale) throw new NotFoundError(`sale ${saleId}`)
      return view(sale)
    },

    async listSales(): Promise<SaleView[]> {
      return Promise.all((await listCurrentSales(db.replica, 50)).map(view))
    },

    /** The invariant report of one sale, from the primary and the gate. */
    async audit(saleId: number): Promise<SaleAuditReport> {
      const audit = await auditSale(db.primary, saleId)
      if (!audit) throw new NotFoundError(`sale ${saleId}`)
      const gateCount = usesGate ? await gate.remaining(saleId) : null
      const inFlight = usesGate ? await gate.unitsInFlight(saleId) : null
      const drift = gateCount === null || inFlight === null ? null : gateCount + inFlight - audit.available
      const violations: string[] = []
      if (audit.available < 0) violations.push('available below zero')
      if (audit.available + audit.reserved + audit.sold !== audit.unitsTotal)
        violations.push('stock not conserved')
      if (audit.unitsInReservedOrders !== audit.reserved)
        violations.push('reserved units differ from reserved orders')
      if (audit.unitsInPaidOrders !== audit.sold) violations.push('sold units differ from paid orders')
      if (audit.maxUnitsPerUser > audit.perUserLimit)
        violations.push('a user holds more than the per-user limit')
      if (drift !== null && drift !== 0) violations.push(`gate drifts from Postgres by ${drift}`)
      return {
        saleId,
        strategy: config.STOCK_STRATEGY,
        initial: audit.unitsTotal,
        available: audit.available,
        reserved: audit.reserved,
        sold: audit.sold,
        ordersReserved: audit.ordersReserved,
        ordersPaid: audit.ordersPaid,
        gate: gateCount,
        inFlight,
        drift,
        maxUnitsPerUser: audit.maxUnitsPerUser,
        perUserLimit: audit.perUserLimit,
        oversold: audit.reserved + audit.sold > audit.unitsTotal || audit.available < 0,
        violations,
      }
    },
  }
}

export type Sales = ReturnType<typeof createSales>
