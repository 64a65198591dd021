import type { CachePolicy, TwoLevelCache } from '../cache/two-level-cache.js'
import { findProduct } from '../catalog/products.repository.js'
import type { Db } from '../db/pool.js'
import { withTransaction } from '../db/transaction.js'
import { InvalidSaleWindowError, NotFoundError, OutOfStockError } from '../errors.js'
import { allotFromInventory } from '../stock/stock.repository.js'
import type { StockStrategyName } from '../config.js'
import { saleFactsOf, saleStatus, type Sale, type SaleFacts } from './sale.js'
import {
  auditSale,
  findSale,
  insertSale,
  listCurrentSales,
  listUnitsHeldBy,
  type NewSale,
} from './sales.repository.js'

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

export const SALE_CACHE: CachePolicy = {
  l1TtlMs: 5000,
  l2: { ttlMs: 60_000, staleMs: 30_000 },
  negativeTtlMs: 1000,
}
// Available units change with every purchase: memory only, for at most 250 ms (±20%), never Redis' L2.
// A sale page may show a count that old; buying never reads it (the purchase path decides).
export const SALE_AVAILABLE_CACHE: CachePolicy = { l1TtlMs: 250, l2: false, negativeTtlMs: 250 }

/** The most sales of each kind the public list shows (live, then upcoming, then just ended). */
export const SALE_LIST_SIZE = 200

/**
 * What a sale asks of the purchase path that src/purchase-wiring.ts chose (src/purchase/purchase-path.ts extends
 * it): its count, its in-flight units, and the word that a sale was created. Declared here so that
 * sales/ needs nothing of purchase/, which sits above it.
 */
export interface SaleStock {
  readonly strategy: StockStrategyName
  available(saleId: number): Promise<number | null>
  inFlight(saleId: number): Promise<number | null>
  saleCreated(saleId: number): Promise<void>
}

export function createSales(deps: { db: Db; path: SaleStock; cache: TwoLevelCache }) {
  const { db, path } = deps
  const facts = deps.cache.family<SaleFacts>('sale', SALE_CACHE)
  const availableUnits = deps.cache.family<number>('sale-available', SALE_AVAILABLE_CACHE)

  // Available units come from the purchase path (the gate, or the primary): never from a long-lived
  // cache, and never from the replica, which may lag. A missing gate falls back to Postgres' count.
  async function currentAvailable(saleId: number): Promise<number | undefined> {
    return (await path.available(saleId)) ?? (await findSale(db.primary, saleId))?.available
  }

  async function view(sale: SaleFacts, fresh = false): Promise<Sale> {
    const available =
      (fresh
        ? await currentAvailable(sale.id)
        : await availableUnits.get(sale.id, () => currentAvailable(sale.id))) ?? 0
    return { ...sale, status: saleStatus(sale, available), remaining: available }
  }

  // The sale's fixed facts may come from the cache or the replica; its remaining units never do.
  async function factsOf(saleId: number): Promise<SaleFacts> {
    const sale = await facts.get(saleId, async ({ recentlyWritten }) => {
      const found = recentlyWritten
        ? await findSale(db.primary, saleId)
        : await db.read((pool) => findSale(pool, saleId))
      return found && saleFactsOf(found)
    })
    if (!sale) throw new NotFoundError(`sale ${saleId}`)
    return sale
  }

  return {
    async createSale(input: NewSale): Promise<Sale> {
      if (input.endsAt <= input.startsAt) throw new InvalidSaleWindowError()
      const saleId = await withTransaction(db.primary, async (tx) => {
        if (!(await findProduct(tx, input.productId))) throw new NotFoundError(`product ${input.productId}`)
        if (!(await allotFromInventory(tx, input.productId, input.units)))
          throw new OutOfStockError(input.productId)
        // "In the future" by Postgres' clock: a worker's own clock may be off.
        const id = await insertSale(tx, input)
        if (id === undefined) throw new InvalidSaleWindowError()
        return id
      })
      await path.saleCreated(saleId)
      await facts.invalidate(saleId)
      return view(saleFactsOf((await findSale(db.primary, saleId))!))
    },

    /**
     * A sale as a page shows it. `fresh` skips the 250 ms memory of the remaining count: the live
     * numbers feed uses it, since its last update after a sell-out must say 0.
     */
    async getSale(saleId: number, options: { fresh?: boolean } = {}): Promise<Sale> {
      return view(await factsOf(saleId), options.fresh)
    },

    /**
     * Who may buy and how: whether guests are kept out, and the sale's waiting room. From the cached
     * facts, so a purchase pays no query.
     */
    async entryRulesOf(saleId: number): Promise<Pick<SaleFacts, 'registeredOnly' | 'queue'>> {
      const { registeredOnly, queue } = await factsOf(saleId)
      return { registeredOnly, queue }
    },

    async listSales(): Promise<Sale[]> {
      const sales = await db.read((pool) => listCurrentSales(pool, SALE_LIST_SIZE))
      return Promise.all(sales.map((sale) => view(saleFactsOf(sale))))
    },

    /**
     * The units a customer holds in each of these sales (those with none are left out). From the
     * primary: right after a purchase's 201 the page asks again and must see the new unit.
     */
    async unitsHeldBy(userId: string, saleIds: number[]): Promise<{ saleId: number; units: number }[]> {
      return listUnitsHeldBy(db.primary, userId, saleIds)
    },

    /** The invariant report of one sale, from the primary and the purchase path (the gate's numbers). */
    async audit(saleId: number): Promise<SaleAuditReport> {
      const audit = await auditSale(db.primary, saleId)
      if (!audit) throw new NotFoundError(`sale ${saleId}`)
      const inFlight = await path.inFlight(saleId)
      const gateCount = inFlight === null ? null : await path.available(saleId)
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
        strategy: path.strategy,
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
