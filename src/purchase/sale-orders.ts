import type { PoolClient } from 'pg'
import { PerUserLimitError, type AppError } from '../errors.js'
import { forgetResponses, saveResponses, type IdempotentRequest } from '../idempotency/idempotency.js'
import { newReservedOrder, type Order } from '../orders/order.js'
import { insertSaleOrders } from '../orders/orders.repository.js'
import type { StoredSale } from '../sales/sale.js'
import { addUserUnitsWithinLimit } from '../sales/sales.repository.js'

/** A buyer whose order a batch writes. */
export interface SaleBuyer {
  /** Decided before the write, so the saved idempotent answer can carry the order. */
  orderId: string
  userId: string
  quantity: number
  idempotency: IdempotentRequest | null
  /** The gate's reservation token of the admitted buyer. */
  reservationToken: string | null
}

/** What one buyer gets: the order, or the named error (a replay of its key, the per-user limit). */
export type SaleOrderAnswer = { order: Order } | { error: AppError }

/**
 * The writer of a batch's sale orders, inside the caller's transaction (the gate path calls it, then
 * reserves the stock last; the Postgres path writes its one buyer with the same rules in one statement,
 * postgres/sale-purchase.repository.ts): saves the keyed buyers' answers, raises the per-user units
 * within the sale's limit, and inserts every order that passed, in one statement. A key Postgres had
 * answered already is replayed, a buyer over the limit refused and its saved answer dropped again;
 * the batch answers that buyer. Three Postgres round trips (two without a keyed buyer), whatever the
 * number of buyers.
 */
export async function writeSaleOrders<B extends SaleBuyer>(
  tx: PoolClient,
  sale: StoredSale,
  buyers: B[],
  ttlSeconds: number,
): Promise<Map<B, SaleOrderAnswer>> {
  const orders = new Map(buyers.map((b) => [b, orderFor(b, sale, ttlSeconds)]))
  const answers = new Map<B, SaleOrderAnswer>()
  // The answers are saved first, in the order's own transaction, so order and answer commit together;
  // a key Postgres answered already must not get a second order.
  const keyed = buyers.filter((b) => b.idempotency)
  const replays = await saveResponses(
    tx,
    keyed.map((b) => ({ request: b.idempotency!, status: 201, body: orders.get(b)! })),
  )
  for (const b of keyed) {
    const replay = replays.get(b.idempotency!)
    if (replay) answers.set(b, { error: replay })
  }
  const candidates = buyers.filter((b) => !answers.has(b))
  // Concurrency: per-user units are raised in user-id order, so two overlapping transactions that share
  // users lock those rows in the same order and cannot deadlock.
  const perUser = [...groupBy(candidates, (b) => b.userId)]
    .map(([userId, own]) => ({ userId, quantity: own.reduce((sum, b) => sum + b.quantity, 0) }))
    .sort((a, b) => (a.userId < b.userId ? -1 : 1))
  const within = await addUserUnitsWithinLimit(tx, sale.id, sale.perUserLimit, perUser)
  const overLimit = candidates.filter((b) => !within.has(b.userId))
  for (const b of overLimit) answers.set(b, { error: new PerUserLimitError() })
  await forgetResponses(
    tx,
    overLimit.filter((b) => b.idempotency).map((b) => b.idempotency!),
  )
  const live = candidates.filter((b) => within.has(b.userId))
  if (live.length === 0) return answers
  await insertSaleOrders(
    tx,
    { saleId: sale.id, productId: sale.productId, unitPriceCents: sale.priceCents },
    live.map((b) => ({ ...orders.get(b)!, quantity: b.quantity, reservationToken: b.reservationToken })),
  )
  for (const b of live) answers.set(b, { order: orders.get(b)! })
  return answers
}

function orderFor(b: SaleBuyer, sale: StoredSale, ttlSeconds: number): Order {
  const now = Date.now()
  return newReservedOrder({
    id: b.orderId,
    userId: b.userId,
    saleId: sale.id,
    expiresAt: new Date(now + ttlSeconds * 1000).toISOString(),
    createdAt: new Date(now).toISOString(),
    items: [{ productId: sale.productId, quantity: b.quantity, unitPriceCents: sale.priceCents }],
  })
}

export function groupBy<T, K>(values: T[], keyOf: (value: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>()
  for (const value of values) {
    const group = groups.get(keyOf(value))
    if (group) group.push(value)
    else groups.set(keyOf(value), [value])
  }
  return groups
}
