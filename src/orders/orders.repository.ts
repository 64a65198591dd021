import type { Queryable } from '../db/transaction.js'

export type OrderStatus = 'reserved' | 'paid' | 'cancelled' | 'expired'

export interface OrderItem {
  productId: number
  quantity: number
  unitPriceCents: number
}

export interface Order {
  id: string
  /** What a shopper reads and quotes: the first 8 characters of the id, upper case (`1A2B3C4D`). */
  number: string
  userId: string
  saleId: number | null
  status: OrderStatus
  totalCents: number
  expiresAt: string
  createdAt: string
  paidAt: string | null
  /** Set when the Redis gate admitted the order (redis-gate): its units came out of the gate. */
  reservationToken: string | null
  items: OrderItem[]
}

interface OrderRow {
  id: string
  user_id: string
  sale_id: number | null
  status: OrderStatus
  total_cents: number
  expires_at: Date
  created_at: Date
  paid_at: Date | null
  reservation_token: string | null
  items: { product_id: number; quantity: number; unit_price_cents: number }[]
}

/** The order number shown to shoppers; the id stays the key (8 hex digits may repeat across orders). */
export const orderNumberOf = (id: string): string => id.slice(0, 8).toUpperCase()

const toOrder = (row: OrderRow): Order => ({
  id: row.id,
  number: orderNumberOf(row.id),
  userId: row.user_id,
  saleId: row.sale_id,
  status: row.status,
  totalCents: row.total_cents,
  expiresAt: row.expires_at.toISOString(),
  createdAt: row.created_at.toISOString(),
  paidAt: row.paid_at?.toISOString() ?? null,
  reservationToken: row.reservation_token,
  items: row.items.map((item) => ({
    productId: item.product_id,
    quantity: item.quantity,
    unitPriceCents: item.unit_price_cents,
  })),
})

// One query per order read: the items come along as a JSON array.
const SELECT_ORDER = `
  SELECT o.id, o.user_id, o.sale_id, o.status, o.total_cents, o.expires_at, o.created_at, o.paid_at, o.reservation_token,
         COALESCE((SELECT json_agg(json_build_object('product_id', i.product_id, 'quantity', i.quantity,
                                                     'unit_price_cents', i.unit_price_cents)
                                   ORDER BY i.product_id)
                     FROM order_items i WHERE i.order_id = o.id), '[]') AS items
    FROM orders o`

export async function findOrder(db: Queryable, orderId: string): Promise<Order | undefined> {
  const { rows } = await db.query<OrderRow>(`${SELECT_ORDER} WHERE o.id = $1`, [orderId])
  return rows[0] && toOrder(rows[0])
}

export async function listOrdersOfUser(db: Queryable, userId: string, limit: number): Promise<Order[]> {
  const { rows } = await db.query<OrderRow>(
    `${SELECT_ORDER} WHERE o.user_id = $1 ORDER BY o.created_at DESC, o.id LIMIT $2`,
    [userId, limit],
  )
  return rows.map(toOrder)
}

export interface NewOrder {
  userId: string
  saleId: number | null
  ttlSeconds: number
  reservationToken: string | null
  items: OrderItem[]
}

/** The largest total an order may have: orders.total_cents is an int4. */
export const MAX_ORDER_TOTAL_CENTS = 2_147_483_647

/**
 * Inserts a reserved order and its items in one statement; the total is computed from the given
 * (server) prices. One round trip: inside a purchase transaction every statement is time a connection
 * is held.
 */
export async function insertReservedOrder(tx: Queryable, order: NewOrder): Promise<Order> {
  const total = order.items.reduce((sum, item) => sum + item.quantity * item.unitPriceCents, 0)
  const { rows } = await tx.query<{ id: string; expires_at: Date; created_at: Date }>(
    `WITH o AS (
       INSERT INTO orders (user_id, sale_id, status, total_cents, expires_at, reservation_token)
       VALUES ($1, $2, 'reserved', $3, now() + make_interval(secs => $4), $5)
       RETURNING id, expires_at, created_at
     ), i AS (
       INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
       SELECT o.id, x.* FROM o, unnest($6::bigint[], $7::int[], $8::int[]) AS x
     )
     SELECT id, expires_at, created_at FROM o`,
    [
      order.userId,
      order.saleId,
      total,
      order.ttlSeconds,
      order.reservationToken,
      order.items.map((i) => i.productId),
      order.items.map((i) => i.quantity),
      order.items.map((i) => i.unitPriceCents),
    ],
  )
  const row = rows[0]!
  return {
    id: row.id,
    number: orderNumberOf(row.id),
    userId: order.userId,
    saleId: order.saleId,
    status: 'reserved',
    totalCents: total,
    expiresAt: row.expires_at.toISOString(),
    createdAt: row.created_at.toISOString(),
    paidAt: null,
    reservationToken: order.reservationToken,
    items: [...order.items].sort((a, b) => a.productId - b.productId),
  }
}

/** The fixed facts of a flash sale that its orders copy: product and price. */
export interface SaleTerms {
  saleId: number
  productId: number
  unitPriceCents: number
}

/** A sale order as a purchase writes it: its id and times are decided before the write. */
export interface NewSaleOrder {
  id: string
  userId: string
  quantity: number
  expiresAt: string
  createdAt: string
  /** The gate's token on the gate path; null on the Postgres path. */
  reservationToken: string | null
}

/** One statement for a sale's orders (one, or a whole batch) and their items, at the sale's (server) price. */
export async function insertSaleOrders(
  tx: Queryable,
  sale: SaleTerms,
  orders: NewSaleOrder[],
): Promise<void> {
  await tx.query(
    `WITH o AS (
       INSERT INTO orders (id, user_id, sale_id, status, total_cents, expires_at, created_at, updated_at, reservation_token)
       SELECT id, u, $1, 'reserved', q * $3, e, c, c, t
         FROM unnest($4::uuid[], $5::uuid[], $6::int[], $7::timestamptz[], $8::timestamptz[], $9::text[])
           AS x (id, u, q, e, c, t)
       RETURNING id
     )
     INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
     SELECT x.id, $2, x.q, $3 FROM unnest($4::uuid[], $6::int[]) AS x (id, q)`,
    [
      sale.saleId,
      sale.productId,
      sale.unitPriceCents,
      orders.map((o) => o.id),
      orders.map((o) => o.userId),
      orders.map((o) => o.quantity),
      orders.map((o) => o.expiresAt),
      orders.map((o) => o.createdAt),
      orders.map((o) => o.reservationToken),
    ],
  )
}

// Concurrency: every status change is a conditional UPDATE `WHERE status = 'reserved'`. Payment,
// cancellation and the expiry sweeper may all race for the same order; exactly one of them matches
// the row, and only that one moves the stock. Reading the status first and writing it later would
// let two of them both win and release (or sell) the same units twice.

/** reserved -> paid, only while the reservation still holds. `false` when it no longer applies. */
export async function markPaidIfStillReserved(tx: Queryable, orderId: string): Promise<boolean> {
  const { rowCount } = await tx.query(
    `UPDATE orders SET status = 'paid', paid_at = now(), updated_at = now()
      WHERE id = $1 AND status = 'reserved' AND expires_at > now()`,
    [orderId],
  )
  return rowCount === 1
}

/** reserved -> cancelled. `false` when the order was not reserved any more. */
export async function markCancelledIfReserved(tx: Queryable, orderId: string): Promise<boolean> {
  const { rowCount } = await tx.query(
    `UPDATE orders SET status = 'cancelled', cancelled_at = now(), updated_at = now()
      WHERE id = $1 AND status = 'reserved'`,
    [orderId],
  )
  return rowCount === 1
}

/**
 * reserved -> expired for up to `limit` orders whose time is up; returns them with their items.
 * Concurrency: SKIP LOCKED lets two sweepers run at once, each taking different orders, instead of
 * queueing behind each other (or both releasing the same order: the status guard prevents that).
 */
export async function expireDueOrders(tx: Queryable, limit: number): Promise<Order[]> {
  const { rows } = await tx.query<{ id: string }>(
    `UPDATE orders SET status = 'expired', updated_at = now()
      WHERE id IN (SELECT id FROM orders WHERE status = 'reserved' AND expires_at <= now()
                    ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
        AND status = 'reserved'
      RETURNING id`,
    [limit],
  )
  if (rows.length === 0) return []
  const expired = await tx.query<OrderRow>(`${SELECT_ORDER} WHERE o.id = ANY($1::uuid[])`, [
    rows.map((r) => r.id),
  ])
  return expired.rows.map(toOrder)
}
