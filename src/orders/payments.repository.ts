import type { Queryable } from '../db/transaction.js'

// Two ledgers (migration 008): the shop's `payments`, what it charged per order and what it refunded,
// and the simulated provider's `simulated_payment_charges`, one row per idempotency key.

/** The provider's ledger: writes the charge of `key` unless it exists; its outcome, or null when it existed. */
export async function insertProviderCharge(
  db: Queryable,
  key: string,
  amountCents: number,
  charged: boolean,
): Promise<boolean | null> {
  const { rows } = await db.query<{ charged: boolean }>(
    `INSERT INTO simulated_payment_charges (key, amount_cents, charged) VALUES ($1, $2, $3)
     ON CONFLICT (key) DO NOTHING RETURNING charged`,
    [key, amountCents, charged],
  )
  return rows[0]?.charged ?? null
}

/** The provider's ledger: the outcome of the charge of `key`, or null when it has none. */
export async function findProviderCharge(db: Queryable, key: string): Promise<boolean | null> {
  const { rows } = await db.query<{ charged: boolean }>(
    'SELECT charged FROM simulated_payment_charges WHERE key = $1',
    [key],
  )
  return rows[0]?.charged ?? null
}

/** The provider's ledger: marks the charge of `key` refunded; false when there was none to refund. */
export async function refundProviderCharge(db: Queryable, key: string): Promise<boolean> {
  const { rowCount } = await db.query(
    'UPDATE simulated_payment_charges SET refunded = true WHERE key = $1 AND charged AND NOT refunded',
    [key],
  )
  return rowCount === 1
}

/** The shop's ledger: the order was charged `amountCents` (once: a second record of it changes nothing). */
export async function recordCharge(db: Queryable, orderId: string, amountCents: number): Promise<void> {
  await db.query(
    `INSERT INTO payments (order_id, amount_cents) VALUES ($1, $2) ON CONFLICT (order_id) DO NOTHING`,
    [orderId, amountCents],
  )
}

/** The shop's ledger: the order's charge was given back because the order `reason`. */
export async function recordRefund(
  db: Queryable,
  orderId: string,
  reason: 'expired' | 'cancelled',
): Promise<void> {
  await db.query(
    `UPDATE payments SET refunded_at = now(), refund_reason = $2 WHERE order_id = $1 AND refunded_at IS NULL`,
    [orderId, reason],
  )
}

/** Charged orders that can no longer be paid (expired or cancelled) whose charge is not refunded yet. */
export async function findChargesToRefund(
  db: Queryable,
  limit: number,
): Promise<{ orderId: string; reason: 'expired' | 'cancelled' }[]> {
  const { rows } = await db.query<{ order_id: string; status: 'expired' | 'cancelled' }>(
    `SELECT p.order_id, o.status FROM payments p JOIN orders o ON o.id = p.order_id
      WHERE p.refunded_at IS NULL AND o.status IN ('expired', 'cancelled')
      ORDER BY p.charged_at LIMIT $1`,
    [limit],
  )
  return rows.map((row) => ({ orderId: row.order_id, reason: row.status }))
}
