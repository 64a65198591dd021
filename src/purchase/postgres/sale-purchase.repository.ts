import { abortStatement, type Queryable } from '../../db/transaction.js'
import type { Order } from '../../orders/order.js'
import type { StoredResponse } from '../../idempotency/idempotency.repository.js'

/** One buyer's purchase as the statement takes it: the order's id, number and times are the app's. */
export interface SalePurchase {
  saleId: number
  userId: string
  quantity: number
  orderId: string
  orderNumber: string
  createdAt: string
  expiresAt: string
  /** The Idempotency-Key whose answer is saved with the order; null without one. */
  key: { key: string; method: string; path: string; requestHash: string } | null
}

/** What the statement did, told apart from what came back. */
export type SalePurchaseOutcome =
  | { outcome: 'created'; order: Order; available: number; version: number }
  | { outcome: 'replay'; saved: StoredResponse }
  | { outcome: 'no_sale' | 'upcoming' | 'ended' | 'sold_out' | 'per_user_limit' }

/** The key was answered by another request after this statement's snapshot: run the statement again. */
export const KEY_ANSWERED_MEANWHILE = 'key answered meanwhile'

/**
 * One buyer's sale order in ONE statement of chained data-modifying CTEs, each step fed by the one
 * before: the sale (existence, window, units seen), the key's saved answer, the per-user units raised
 * within the limit, the order and its item, the answer saved under the key, and, `withStock`, the stock
 * row's decrement. Nothing is written when the key has an answer, the sale is closed or has too few
 * units in the statement's snapshot, or the buyer is over the limit.
 * Concurrency: all or nothing, in one statement. The stock row's CHECK (available >= 0) aborts the
 * whole statement when the units went while it ran (a buyer that waited for the row lock re-reads it),
 * and an answer saved under the key by another request meanwhile aborts it with a failing cast, so the
 * order, the units and the answer never commit without the stock, nor the stock without them. The hot
 * stock row is the last step, and in autocommit it is held only until the statement's own commit.
 */
function salePurchaseSql(withStock: boolean): string {
  return `
WITH sale AS (
  SELECT s.id, s.product_id, s.price_cents, s.per_user_limit, st.available, st.version,
         CASE WHEN now() < s.starts_at THEN 'upcoming' WHEN now() >= s.ends_at THEN 'ended' END AS closed
    FROM flash_sales s JOIN flash_sale_stock st ON st.sale_id = s.id WHERE s.id = $1
), saved AS (
  SELECT request_hash, response_status, response_body FROM idempotency_keys
   WHERE user_id = $2 AND key = $8 AND expires_at > now() AND response_status IS NOT NULL
), open AS (
  SELECT * FROM sale WHERE closed IS NULL AND available >= $3 AND NOT EXISTS (SELECT 1 FROM saved)
), units AS (
  INSERT INTO sale_user_units (sale_id, user_id, units)
  SELECT id, $2, $3 FROM open WHERE $3 <= per_user_limit
  ON CONFLICT (sale_id, user_id) DO UPDATE SET units = sale_user_units.units + excluded.units
    WHERE sale_user_units.units + excluded.units <= (SELECT per_user_limit FROM open)
  RETURNING sale_id
), placed AS (
  INSERT INTO orders (id, user_id, sale_id, status, total_cents, expires_at, created_at, updated_at)
  SELECT $4, $2, o.id, 'reserved', $3 * o.price_cents, $7::text::timestamptz, $6::text::timestamptz,
         $6::text::timestamptz
    FROM open o JOIN units u ON u.sale_id = o.id
  RETURNING id, sale_id, total_cents
), items AS (
  INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
  SELECT p.id, o.product_id, $3, o.price_cents FROM placed p JOIN open o ON o.id = p.sale_id
  RETURNING order_id
), body AS (
  SELECT jsonb_build_object(
           'id', p.id, 'number', $5::text, 'userId', $2::uuid, 'saleId', p.sale_id, 'status', 'reserved',
           'totalCents', p.total_cents, 'expiresAt', $7::text, 'createdAt', $6::text, 'paidAt', null,
           'items', jsonb_build_array(jsonb_build_object(
             'productId', o.product_id, 'quantity', $3::int, 'unitPriceCents', o.price_cents))) AS answer
    FROM placed p JOIN open o ON o.id = p.sale_id JOIN items i ON i.order_id = p.id
), answer AS (
  INSERT INTO idempotency_keys
    (user_id, key, request_method, request_path, request_hash, response_status, response_body)
  SELECT $2, $8, $9, $10, $11, 201, b.answer FROM body b WHERE $8::text IS NOT NULL
  ON CONFLICT (user_id, key) DO UPDATE
    SET request_method = excluded.request_method, request_path = excluded.request_path,
        request_hash = excluded.request_hash, response_status = excluded.response_status,
        response_body = excluded.response_body, created_at = now(), expires_at = now() + interval '24 hours'
    WHERE idempotency_keys.expires_at <= now()
  RETURNING 1
)${
    withStock
      ? `, stock AS (
  UPDATE flash_sale_stock SET available = available - $3, reserved = reserved + $3, version = version + 1
   WHERE sale_id = (SELECT sale_id FROM placed)
  RETURNING available, version
)`
      : ''
  }
SELECT CASE
         WHEN NOT EXISTS (SELECT 1 FROM sale) THEN 'no_sale'
         WHEN EXISTS (SELECT 1 FROM saved) THEN 'replay'
         WHEN (SELECT closed FROM sale) IS NOT NULL THEN (SELECT closed FROM sale)
         WHEN NOT EXISTS (SELECT 1 FROM open) THEN 'sold_out'
         WHEN NOT EXISTS (SELECT 1 FROM body) THEN 'per_user_limit'
         WHEN $8::text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM answer)
           THEN ${abortStatement(KEY_ANSWERED_MEANWHILE)}::text
         ELSE 'created'
       END AS outcome,
       (SELECT answer FROM body) AS "order",
       ${withStock ? '(SELECT available FROM stock)' : '(SELECT available FROM sale)'} AS available,
       ${withStock ? '(SELECT version FROM stock)' : '(SELECT version FROM sale)'} AS version,
       (SELECT request_hash FROM saved) AS saved_hash,
       (SELECT response_status FROM saved) AS saved_status,
       (SELECT response_body FROM saved) AS saved_body`
}

/** The name the whole purchase (withStock) is prepared under: its answer is its COMMIT's. */
export const WHOLE_PURCHASE_STATEMENT = 'sale-purchase-with-stock'

const STATEMENTS = {
  withStock: { name: WHOLE_PURCHASE_STATEMENT, text: salePurchaseSql(true) },
  orderOnly: { name: 'sale-purchase-order-only', text: salePurchaseSql(false) },
}

interface OutcomeRow {
  outcome: SalePurchaseOutcome['outcome']
  order: Order | null
  available: number | null
  version: string | null
  saved_hash: string | null
  saved_status: number | null
  saved_body: unknown
}

/**
 * Runs the purchase statement, prepared under its name (parsed and planned once per connection).
 * `withStock`: the stock decrement too, the whole purchase in one round trip (the atomic strategy, in
 * autocommit); without it, the caller reserves the stock next in its own transaction, and `available`
 * and `version` are the stock row as the statement's snapshot saw it.
 */
export async function purchaseSaleOrder(
  db: Queryable,
  purchase: SalePurchase,
  withStock: boolean,
): Promise<SalePurchaseOutcome> {
  const { key } = purchase
  const { rows } = await db.query<OutcomeRow>({
    ...(withStock ? STATEMENTS.withStock : STATEMENTS.orderOnly),
    values: [
      purchase.saleId,
      purchase.userId,
      purchase.quantity,
      purchase.orderId,
      purchase.orderNumber,
      purchase.createdAt,
      purchase.expiresAt,
      key?.key ?? null,
      key?.method ?? null,
      key?.path ?? null,
      key?.requestHash ?? null,
    ],
  })
  const row = rows[0]!
  switch (row.outcome) {
    case 'created':
      return {
        outcome: 'created',
        order: row.order!,
        available: row.available!,
        version: Number(row.version),
      }
    case 'replay':
      return {
        outcome: 'replay',
        saved: { requestHash: row.saved_hash!, status: row.saved_status!, body: row.saved_body },
      }
    default:
      return { outcome: row.outcome }
  }
}
