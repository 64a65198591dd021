import type { Queryable } from '../db/transaction.js'
import { unnestColumns } from '../db/unnest.js'
import {
  newReservedOrder,
  orderFromRow,
  orderTotalCents,
  type Order,
  type OrderItem,
  type OrderRow,
  type StoredOrder,
} from './order.js'

// One query per order read: the items come along as a JSON array. The columns are named as OrderRow
// (order.ts) names them: the mapping from snake_case is here, once.
const SELECT_ORDER = `
  SELECT o.id, o.user_id AS "userId", o.sale_id AS "saleId", o.status, o.total_cents AS "totalCents",
         o.expires_at AS "expiresAt", o.created_at AS "createdAt", o.paid_at AS "paidAt",
         o.reservation_token AS "reservationToken",
         COALESCE((SELECT json_agg(json_build_object('productId', i.product_id, 'quantity', i.quantity,
                                                     'unitPriceCents', i.unit_price_cents)
                                   ORDER BY i.product_id)
                     FROM order_items i WHERE i.order_id = o.id), '[]') AS items
    FROM orders o`

export async function findOrder(db: Queryable, orderId: string): Promise<StoredOrder | undefined> {
  const { rows } = await db.query<OrderRow>(`${SELECT_ORDER} WHERE o.id = $1`, [orderId])
  return rows[0] && orderFromRow(rows[0])
}

/**
 * The order with Postgres' clock at the moment it was read (ms since the epoch): whether its
 * reservation is still payable is decided on that clock, the one its expires_at was written by, never
 * on a worker's clock, which may be off.
 */
export async function findOrderWithClock(
  db: Queryable,
  orderId: string,
): Promise<{ order: StoredOrder; now: number } | undefined> {
  const { rows } = await db.query<OrderRow & { readAt: Date }>(
    `SELECT x.*, clock_timestamp() AS "readAt" FROM (${SELECT_ORDER} WHERE o.id = $1) x`,
    [orderId],
  )
  const row = rows[0]
  return row && { order: orderFromRow(row), now: row.readAt.getTime() }
}

/**
 * The order, read once every transaction that is changing its row has ended: its row is locked (FOR
 * UPDATE) for the rest of the caller's transaction. For a decision that must not race a concurrent
 * change of the same order (a pay that found it unpayable deciding to refund, while another pay of it
 * may still commit).
 */
export async function findOrderLocked(db: Queryable, orderId: string): Promise<StoredOrder | undefined> {
  const { rows } = await db.query<OrderRow>(`${SELECT_ORDER} WHERE o.id = $1 FOR UPDATE OF o`, [orderId])
  return rows[0] && orderFromRow(rows[0])
}

export async function listOrdersOfUser(db: Queryable, userId: string, limit: number): Promise<StoredOrder[]> {
  const { rows } = await db.query<OrderRow>(
    `${SELECT_ORDER} WHERE o.user_id = $1 ORDER BY o.created_at DESC, o.id LIMIT $2`,
    [userId, limit],
  )
  return rows.map(orderFromRow)
}

export interface NewOrder {
  userId: string
  saleId: number | null
  ttlSeconds: number
  reservationToken: string | null
  items: OrderItem[]
}

/**
 * Inserts a reserved order and its items in one statement; the total is computed from the given
 * (server) prices. One round trip: inside a purchase transaction every statement is time a connection
 * is held.
 */
export async function insertReservedOrder(tx: Queryable, order: NewOrder): Promise<Order> {
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
      orderTotalCents(order.items),
      order.ttlSeconds,
      order.reservationToken,
      ...unnestColumns(order.items, (i) => [i.productId, i.quantity, i.unitPriceCents]),
    ],
  )
  const row = rows[0]!
  return newReservedOrder({
    id: row.id,
    userId: order.userId,
    saleId: order.saleId,
    expiresAt: row.expires_at.toISOString(),
    createdAt: row.created_at.toISOString(),
    items: order.items,
  })
}

// Concurrency: every status change is a conditional UPDATE `WHERE status = 'reserved'`, the rule of
// canTransition (order.ts) held in the database, where concurrent callers meet. Payment,
// cancellation and the expiry sweeper may all race for the same order; exactly one of them matches
// the row, and only that one moves the stock. Reading the status first and writing it later would
// let two of them both win and release (or sell) the same units twice.

/**
 * reserved -> paid, only while the reservation still holds. `false` when it no longer applies. The
 * reservation is judged by the clock when the row is updated (clock_timestamp), not when the
 * transaction began (now()): two pays of one order must agree on whether it expired.
 */
export async function markPaidIfStillReserved(tx: Queryable, orderId: string): Promise<boolean> {
  const { rowCount } = await tx.query(
    `UPDATE orders SET status = 'paid', paid_at = now(), updated_at = now()
      WHERE id = $1 AND status = 'reserved' AND expires_at > clock_timestamp()`,
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
 * The due orders are picked once, as an array (an InitPlan, run once) that the update reaches by
 * primary key. Written as `id IN (subquery)`, statistics taken while no order was reserved (between
 * two sales) made the planner join the two by a nested loop that ran the locking subquery again for
 * every reserved order: with a few thousand due (a sale's reservations lapsing) one sweep took 14 s,
 * hit the statement timeout every round, and expired nothing while the backlog lasted (the fault
 * campaign's I4 failures: reservations outlived their TTL by far more than a sweep interval).
 */
export async function expireDueOrders(tx: Queryable, limit: number): Promise<StoredOrder[]> {
  const { rows } = await tx.query<{ id: string }>(
    `UPDATE orders SET status = 'expired', updated_at = now()
      WHERE id = ANY (ARRAY(SELECT id FROM orders WHERE status = 'reserved' AND expires_at <= now()
                             ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED))
        AND status = 'reserved'
      RETURNING id`,
    [limit],
  )
  if (rows.length === 0) return []
  const expired = await tx.query<OrderRow>(`${SELECT_ORDER} WHERE o.id = ANY($1::uuid[])`, [
    rows.map((r) => r.id),
  ])
  return expired.rows.map(orderFromRow)
}
