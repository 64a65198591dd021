import {
  type AppError,
  OrderExpiredError,
  OrderNotCancellableError,
  OrderNotPayableError,
} from '../errors.js'
import type { FromSchema } from 'json-schema-to-ts'
import type { orderSchema } from './order.schemas.js'

// One order, one place: its shape, the one way a new one is made, the one mapping from its row, and
// the transitions it may make. Every writer (checkout, the Postgres purchase path, the gate's order
// batcher) and every reader goes through here.

/**
 * An order as its owner sees it: the type of the API's answer, derived from its schema. Every field is
 * always there; the schema's `required` leaves some out, as the published OpenAPI document always has.
 */
export type Order = Required<FromSchema<typeof orderSchema>>

/** reserved -> paid | cancelled | expired: the schema's enum. */
export type OrderStatus = Order['status']

/** One product line of an order, at the server's price. */
export type OrderItem = Order['items'][number]

/**
 * An order as its row holds it: with the Redis gate's reservation token, set when the gate admitted it
 * (its units came out of the gate, and a release gives them back there). A gate concern the API never
 * shows: answers go out as `publicOrder(stored)`.
 */
export interface StoredOrder extends Order {
  reservationToken: string | null
}

/**
 * An order as `SELECT_ORDER` (orders.repository.ts) reads it, its columns already named as here: the
 * stored order before its times become the API's ISO text and its number is derived.
 */
export type OrderRow = Omit<StoredOrder, 'number' | 'expiresAt' | 'createdAt' | 'paidAt'> & {
  expiresAt: Date
  createdAt: Date
  paidAt: Date | null
}

/** The order number shown to shoppers; the id stays the key (8 hex digits may repeat across orders). */
export const orderNumberOf = (id: string): string => id.slice(0, 8).toUpperCase()

/** What an order costs at the given (server) prices. */
export const orderTotalCents = (items: OrderItem[]): number =>
  items.reduce((sum, item) => sum + item.quantity * item.unitPriceCents, 0)

/** The largest total an order may have: orders.total_cents is an int4. */
export const MAX_ORDER_TOTAL_CENTS = 2_147_483_647

/**
 * A new order, as every writer answers it: reserved, unpaid, its total computed from its items, the
 * items in product order (the order a read returns them in, so a replay reads the same).
 */
export function newReservedOrder(order: {
  id: string
  userId: string
  saleId: number | null
  expiresAt: string
  createdAt: string
  items: OrderItem[]
}): Order {
  return {
    id: order.id,
    number: orderNumberOf(order.id),
    userId: order.userId,
    saleId: order.saleId,
    status: 'reserved',
    totalCents: orderTotalCents(order.items),
    expiresAt: order.expiresAt,
    createdAt: order.createdAt,
    paidAt: null,
    items: [...order.items].sort((a, b) => a.productId - b.productId),
  }
}

/** The one mapping from an order's row: the times as ISO text, the number from the id. */
export const orderFromRow = (row: OrderRow): StoredOrder => ({
  ...row,
  number: orderNumberOf(row.id),
  expiresAt: row.expiresAt.toISOString(),
  createdAt: row.createdAt.toISOString(),
  paidAt: row.paidAt?.toISOString() ?? null,
})

/** The order without what only the server needs: what an answer (and its saved replay) holds. */
export function publicOrder(order: StoredOrder): Order {
  const { reservationToken: _gateOnly, ...shown } = order
  return shown
}

const NEXT: { readonly [From in OrderStatus]: readonly OrderStatus[] } = {
  reserved: ['paid', 'cancelled', 'expired'],
  paid: [],
  cancelled: [],
  expired: [],
}

/**
 * Whether an order may move from one status to another: only a reservation moves, and only once.
 * Concurrency: this is the rule; the conditional UPDATEs of orders.repository.ts (`WHERE status =
 * 'reserved'`) are how it holds when payment, cancellation and the sweeper race for one order.
 */
export const canTransition = (from: OrderStatus, to: OrderStatus): boolean => NEXT[from].includes(to)

/**
 * Only a reservation whose time is not up may be paid (like the SQL's `expires_at > clock_timestamp()`).
 * `now` is Postgres' clock (findOrderWithClock), the one expires_at was written by.
 */
export const canPay = (order: Order, now: number): boolean =>
  canTransition(order.status, 'paid') && Date.parse(order.expiresAt) > now

/** Why an order cannot be paid: a reservation that cannot be paid has run out of time (the sweeper may not have seen it yet). */
export function whyNotPayable(order: Order): AppError {
  return order.status === 'reserved' || order.status === 'expired'
    ? new OrderExpiredError()
    : new OrderNotPayableError(order.status)
}

/** Why an order cannot be cancelled; null when it is cancelled already (cancelling twice is a no-op). */
export function whyNotCancellable(order: Order): AppError | null {
  return order.status === 'cancelled' ? null : new OrderNotCancellableError(order.status)
}
