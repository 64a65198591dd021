import { abortStatement, type Queryable } from '../db/transaction.js'
import { unnestColumns } from '../db/unnest.js'
import {
  NotFoundError,
  PerUserLimitError,
  SaleNotActiveError,
  SoldOutError,
  type AppError,
} from '../errors.js'
import { replayOrReuseError, type IdempotentRequest } from '../idempotency/idempotency.js'
import type { StoredResponse } from '../idempotency/idempotency.repository.js'
import { newReservedOrder, type Order } from '../orders/order.js'
import type { StoredSale } from '../sales/sale.js'

/**
 * One buyer's order as the statement writes it: the app made its id and its answer; its times are
 * Postgres' (the statement's start, and that plus the reservation's time), written into the answer too.
 */
export interface SaleOrderRow {
  orderId: string
  userId: string
  quantity: number
  /** The Redis gate's reservation token; null on the Postgres path. */
  reservationToken: string | null
  /** The order as the 201 answer carries it, saved under the key. */
  answer: string
  /** The Idempotency-Key whose answer is saved with the order; null without one. */
  key: { key: string; method: string; path: string; requestHash: string } | null
}

/**
 * What the statement does to the sale's stock row:
 * - `decrement`: takes the written orders' units in the same statement (the atomic strategy);
 * - `check`: reads the units in the statement's snapshot and writes nothing when too few are left
 *   (pessimistic and optimistic, which reserve the row in their own step after it);
 * - `none`: leaves it alone (the gate's batch, whose units the gate reserved; its UPDATE goes with COMMIT).
 */
export type StockStep = 'decrement' | 'check' | 'none'

/** What the statement did for one buyer. */
export type SaleOrderOutcome =
  | { outcome: 'created'; createdAt: string; expiresAt: string }
  | { outcome: 'replay'; saved: StoredResponse }
  | { outcome: 'no_sale' | 'upcoming' | 'ended' | 'sold_out' | 'per_user_limit' }

/** A key was answered by another request after this statement's snapshot: run the statement again. */
export const KEY_ANSWERED_MEANWHILE = 'key answered meanwhile'

/**
 * The statement (or the gate's batch: see reservationLapsedGuard) waited for the stock row so long that
 * half of the reservation's time went by: no order is made (a buyer must hear 201 with most of the time to pay still ahead, never an order already
 * expiring); the buyer hears 503 and tries again.
 */
export const RESERVATION_LAPSED = 'reservation lapsed while waiting'

/**
 * The gate batch's guard against the same wait, a statement sent after its stock UPDATEs (so after every
 * lock the batch waits for) and before COMMIT: it aborts the transaction when Postgres' clock is past
 * half of the reservation whose orders the batch wrote at `createdAt`, and selects nothing otherwise.
 */
export function reservationLapsedGuard(createdAt: string, ttlSeconds: number): string {
  const halfway = new Date(Date.parse(createdAt) + (ttlSeconds * 1000) / 2)
  if (Number.isNaN(halfway.getTime())) throw new Error(`not a time: ${createdAt}`)
  return `SELECT ${abortStatement(RESERVATION_LAPSED)}
   WHERE clock_timestamp() > '${halfway.toISOString()}'::timestamptz`
}

/**
 * Every sale order, on both paths, is written by this ONE statement of chained data-modifying CTEs,
 * for one buyer (the Postgres path) or a batch of them (the gate): the orders' times by Postgres' clock
 * (never a worker's, which may be off) and the sale's window judged at that very time (so no order is
 * made outside it, even by a batch that began before the sale's end), the sale (existence, units in
 * the snapshot), the keys' saved answers, the per-user units raised within
 * the limit (summed per user, in user-id order), the orders and their items, the answers saved under
 * the keys, and, for `decrement`, the stock row. A buyer whose key has an answer gets that answer
 * replayed and nothing written; a buyer over the limit gets nothing written.
 * Concurrency: all or nothing, in one statement. The stock row's CHECK (available >= 0) aborts the
 * whole statement when the units went while it ran (a buyer that waited for the row lock re-reads it),
 * and an answer saved under a key by another request meanwhile aborts it with a failing cast, so no
 * order, units or answer commit without the others. The hot stock row is the last step: in autocommit
 * it is held only until the statement's own commit. Postgres runs a data-modifying step when its rows
 * are first read (or, if never read, after the query), so the stock step reads the items written and
 * the outcome reads the answers before the stock: no write is left to run under the row's lock. With
 * the decrement, the clock is read after the stock step (its lock wait): a statement that waited past
 * half the reservation's time aborts too.
 * Per-user units are raised in user-id order, so two overlapping statements that share users lock
 * those rows in the same order and cannot deadlock.
 */
/** to_char's pattern for the ISO 8601 text JavaScript's toISOString writes (UTC, milliseconds). */
const ISO_MS = 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'

const WRITE_SALE_ORDERS = `
WITH clock AS (
  SELECT t AS created_at, t + make_interval(secs => $12) AS expires_at,
         to_char(t AT TIME ZONE 'UTC', '${ISO_MS}') AS created_text,
         to_char((t + make_interval(secs => $12)) AT TIME ZONE 'UTC', '${ISO_MS}') AS expires_text
    FROM (SELECT date_trunc('milliseconds', statement_timestamp()) AS t) now
), buyer AS (
  SELECT b.*, c.created_at, c.expires_at,
         b.answer::jsonb || jsonb_build_object('createdAt', c.created_text, 'expiresAt', c.expires_text)
           AS answer_json
    FROM unnest($2::uuid[], $3::uuid[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[],
                $9::text[], $10::text[])
           WITH ORDINALITY AS b (order_id, user_id, quantity, token, answer, key, method, path, hash, n)
   CROSS JOIN clock c
), sale AS (
  SELECT s.id, s.product_id, s.price_cents, s.per_user_limit, st.available,
         CASE WHEN c.created_at < s.starts_at THEN 'upcoming' WHEN c.created_at >= s.ends_at THEN 'ended' END
           AS closed
    FROM flash_sales s JOIN flash_sale_stock st ON st.sale_id = s.id CROSS JOIN clock c WHERE s.id = $1
), saved AS (
  SELECT b.n, k.request_hash, k.response_status, k.response_body
    FROM buyer b JOIN idempotency_keys k ON k.user_id = b.user_id AND k.key = b.key
   WHERE k.expires_at > now() AND k.response_status IS NOT NULL
), fresh AS (
  SELECT b.* FROM buyer b WHERE NOT EXISTS (SELECT 1 FROM saved v WHERE v.n = b.n)
), open AS (
  SELECT * FROM sale
   WHERE closed IS NULL
     AND ($11::text = 'none' OR available >= (SELECT coalesce(sum(quantity), 0) FROM fresh))
), units AS (
  INSERT INTO sale_user_units (sale_id, user_id, units)
  SELECT o.id, f.user_id, sum(f.quantity) FROM fresh f CROSS JOIN open o
   GROUP BY o.id, o.per_user_limit, f.user_id
  HAVING sum(f.quantity) <= o.per_user_limit
   ORDER BY f.user_id
  ON CONFLICT (sale_id, user_id) DO UPDATE SET units = sale_user_units.units + excluded.units
    WHERE sale_user_units.units + excluded.units <= (SELECT per_user_limit FROM open)
  RETURNING user_id
), placed AS (
  INSERT INTO orders
    (id, user_id, sale_id, status, total_cents, expires_at, created_at, updated_at, reservation_token)
  SELECT f.order_id, f.user_id, o.id, 'reserved', f.quantity * o.price_cents, f.expires_at,
         f.created_at, f.created_at, f.token
    FROM fresh f JOIN units u ON u.user_id = f.user_id CROSS JOIN open o
  RETURNING id
), items AS (
  INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
  SELECT p.id, o.product_id, f.quantity, o.price_cents
    FROM placed p JOIN fresh f ON f.order_id = p.id CROSS JOIN open o
  RETURNING quantity
), answer AS (
  INSERT INTO idempotency_keys
    (user_id, key, request_method, request_path, request_hash, response_status, response_body)
  SELECT f.user_id, f.key, f.method, f.path, f.hash, 201, f.answer_json
    FROM placed p JOIN fresh f ON f.order_id = p.id WHERE f.key IS NOT NULL
  ON CONFLICT (user_id, key) DO UPDATE
    SET request_method = excluded.request_method, request_path = excluded.request_path,
        request_hash = excluded.request_hash, response_status = excluded.response_status,
        response_body = excluded.response_body, created_at = now(), expires_at = now() + interval '24 hours'
    WHERE idempotency_keys.expires_at <= now()
  RETURNING user_id, key
), stock AS (
  UPDATE flash_sale_stock st
     SET available = st.available - w.units, reserved = st.reserved + w.units, version = st.version + 1
    FROM (SELECT sum(quantity) AS units FROM items) w
   WHERE $11::text = 'decrement' AND st.sale_id = $1 AND w.units > 0
  RETURNING 1
)
SELECT CASE
         WHEN NOT EXISTS (SELECT 1 FROM sale) THEN 'no_sale'
         WHEN v.n IS NOT NULL THEN 'replay'
         WHEN (SELECT closed FROM sale) IS NOT NULL THEN (SELECT closed FROM sale)
         WHEN NOT EXISTS (SELECT 1 FROM open) THEN 'sold_out'
         WHEN NOT EXISTS (SELECT 1 FROM units u WHERE u.user_id = b.user_id) THEN 'per_user_limit'
         WHEN b.key IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM answer a WHERE a.user_id = b.user_id AND a.key = b.key)
           THEN ${abortStatement(KEY_ANSWERED_MEANWHILE)}::text
         WHEN $11::text = 'decrement' AND (SELECT count(*) FROM stock) >= 0
              AND clock_timestamp() > b.created_at + (b.expires_at - b.created_at) / 2
           THEN ${abortStatement(RESERVATION_LAPSED)}::text
         ELSE 'created'
       END AS outcome,
       v.request_hash AS saved_hash, v.response_status AS saved_status, v.response_body AS saved_body,
       c.created_text, c.expires_text
  FROM buyer b LEFT JOIN saved v ON v.n = b.n CROSS JOIN clock c
 ORDER BY b.n`

/** The name the statement is prepared under; in autocommit (the atomic strategy) its answer is its COMMIT's. */
export const WRITE_SALE_ORDERS_STATEMENT = 'write-sale-orders'

interface OutcomeRow {
  outcome: SaleOrderOutcome['outcome']
  saved_hash: string | null
  saved_status: number | null
  saved_body: unknown
  created_text: string
  expires_text: string
}

/**
 * Writes the buyers' orders of one sale (see WRITE_SALE_ORDERS), prepared under its name: parsed and
 * planned once per connection. One round trip, whatever the number of buyers; the outcomes come back in
 * the buyers' order.
 */
async function writeSaleOrderRows(
  db: Queryable,
  saleId: number,
  orders: SaleOrderRow[],
  stock: StockStep,
  ttlSeconds: number,
): Promise<SaleOrderOutcome[]> {
  if (orders.length === 0) return []
  const { rows } = await db.query<OutcomeRow>({
    name: WRITE_SALE_ORDERS_STATEMENT,
    text: WRITE_SALE_ORDERS,
    values: [
      saleId,
      ...unnestColumns(orders, (o) => [
        o.orderId,
        o.userId,
        o.quantity,
        o.reservationToken,
        o.answer,
        o.key?.key ?? null,
        o.key?.method ?? null,
        o.key?.path ?? null,
        o.key?.requestHash ?? null,
      ]),
      stock,
      ttlSeconds,
    ],
  })
  return rows.map((row): SaleOrderOutcome => {
    if (row.outcome === 'created')
      return { outcome: 'created', createdAt: row.created_text, expiresAt: row.expires_text }
    if (row.outcome !== 'replay') return { outcome: row.outcome }
    return {
      outcome: 'replay',
      saved: { requestHash: row.saved_hash!, status: row.saved_status!, body: row.saved_body },
    }
  })
}

/** A buyer whose sale order is to be written. */
export interface SaleBuyer {
  /** Made by the app, so the saved idempotent answer can carry the order. */
  orderId: string
  userId: string
  quantity: number
  idempotency: IdempotentRequest | null
  /** The gate's reservation token of the admitted buyer; null on the Postgres path. */
  reservationToken: string | null
}

/** What one buyer gets: the order, or the named error (a replay of its key, the limit, a closed sale). */
export type SaleOrderAnswer = { order: Order } | { error: AppError }

/**
 * The one writer of sale orders, for both paths, inside the caller's transaction or in autocommit: one
 * statement (WRITE_SALE_ORDERS above) writes the orders of one sale with their per-user units and
 * saved answers, all or nothing. The Postgres path writes its one buyer (the atomic strategy with the
 * stock decrement in the same statement); the gate's batch writes its buyers of each sale, then
 * commits the units the gate reserved. A buyer whose key Postgres has answered gets that answer back.
 */
export async function writeSaleOrders<B extends SaleBuyer>(
  db: Queryable,
  sale: StoredSale,
  buyers: B[],
  options: { ttlSeconds: number; stock: StockStep },
): Promise<Map<B, SaleOrderAnswer>> {
  // The orders as the 201 answers carry them, but for their times: the statement writes Postgres' into
  // the saved answers and returns them.
  const orders = buyers.map((b) =>
    newReservedOrder({
      id: b.orderId,
      userId: b.userId,
      saleId: sale.id,
      createdAt: '',
      expiresAt: '',
      items: [{ productId: sale.productId, quantity: b.quantity, unitPriceCents: sale.priceCents }],
    }),
  )
  const outcomes = await writeSaleOrderRows(
    db,
    sale.id,
    buyers.map((b, i) => ({
      orderId: b.orderId,
      userId: b.userId,
      quantity: b.quantity,
      reservationToken: b.reservationToken,
      answer: JSON.stringify(orders[i]),
      key: b.idempotency,
    })),
    options.stock,
    options.ttlSeconds,
  )
  const answers = new Map<B, SaleOrderAnswer>()
  for (const [i, b] of buyers.entries()) {
    const outcome = outcomes[i]!
    answers.set(
      b,
      outcome.outcome === 'created'
        ? { order: { ...orders[i]!, createdAt: outcome.createdAt, expiresAt: outcome.expiresAt } }
        : { error: refusalOf(outcome, sale.id, b.idempotency) },
    )
  }
  return answers
}

/** The statement's refusals and replays as the errors they answer with. */
function refusalOf(
  outcome: Exclude<SaleOrderOutcome, { outcome: 'created' }>,
  saleId: number,
  idempotency: IdempotentRequest | null,
): AppError {
  switch (outcome.outcome) {
    case 'replay':
      return replayOrReuseError(idempotency!, outcome.saved)
    case 'no_sale':
      return new NotFoundError(`sale ${saleId}`)
    case 'upcoming':
    case 'ended':
      return new SaleNotActiveError(saleId, outcome.outcome)
    case 'sold_out':
      return new SoldOutError(saleId)
    case 'per_user_limit':
      return new PerUserLimitError()
  }
}

/** How many orders (of any status) each of these sales has; a sale without one is left out. */
export async function countOrdersOfSales(db: Queryable, saleIds: number[]): Promise<Map<number, number>> {
  const { rows } = await db.query<{ sale_id: string; orders: string }>(
    `SELECT sale_id, count(*) AS orders FROM orders WHERE sale_id = ANY($1::bigint[]) GROUP BY sale_id`,
    [saleIds],
  )
  return new Map(rows.map((row) => [Number(row.sale_id), Number(row.orders)]))
}

/**
 * The Idempotency-Key under which each order of the sale (of any status) was answered, as
 * `<userId>:<key>`: the retries that must be answered with their order. An order made without a key
 * has none.
 */
export async function listOrderKeysOfSale(db: Queryable, saleId: number): Promise<string[]> {
  const { rows } = await db.query<{ retry: string }>(
    `SELECT k.user_id || ':' || k.key AS retry
       FROM orders o JOIN idempotency_keys k ON k.user_id = o.user_id AND (k.response_body->>'id')::uuid = o.id
      WHERE o.sale_id = $1 AND k.response_status = 201`,
    [saleId],
  )
  return rows.map((row) => row.retry)
}
