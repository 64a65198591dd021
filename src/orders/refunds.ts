import type { Queryable } from '../db/transaction.js'
import type { PaymentProvider } from './payment-provider.js'
import { findChargesToRefund, recordRefund } from './payments.repository.js'

/** Gives back an order's charge and records why; a charge refunded before is left alone. */
export async function refundCharge(
  db: Queryable,
  payments: PaymentProvider,
  orderId: string,
  reason: 'expired' | 'cancelled',
): Promise<void> {
  await payments.refund(orderId)
  await recordRefund(db, orderId, reason)
}

/**
 * Refunds the charges of orders that can no longer be paid (expired, cancelled) and are not refunded
 * yet, at most `limit` of them; returns how many. For the jobs process: the charge of an order whose pay
 * failed after the charge (its transaction, its worker) and whose buyer never came back.
 * Concurrency: a refund is conditional at the provider and in `payments`, so two rounds (or a round and
 * the pay that found its order expired) give a charge back once.
 */
export async function refundUnusableCharges(
  db: Queryable,
  payments: PaymentProvider,
  limit: number,
): Promise<number> {
  const due = await findChargesToRefund(db, limit)
  for (const { orderId, reason } of due) await refundCharge(db, payments, orderId, reason)
  return due.length
}
