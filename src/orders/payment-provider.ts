import { setTimeout as sleep } from 'node:timers/promises'
import type { Queryable } from '../db/transaction.js'
import { findProviderCharge, insertProviderCharge, refundProviderCharge } from './payments.repository.js'

/**
 * A card processor, as the shop uses it: every call carries an idempotency key (the order's id), as
 * real providers take one, so a charge asked twice (two pays of one order at once, a retry whose
 * Idempotency-Key lock lapsed during a slow charge) is made once.
 */
export interface PaymentProvider {
  /**
   * Charges `amountCents` under `key`: true when the charge went through, false when the provider
   * declined it. A key charged before answers that first outcome and charges nothing more.
   */
  charge(key: string, amountCents: number): Promise<boolean>
  /** Gives back the charge made under `key`, once: true if it refunded one now, false if there was none to give back. */
  refund(key: string): Promise<boolean>
}

/**
 * A stand-in for a card processor, so the demo can show slow and failing payments: every charge takes
 * `latencyMs` and is declined with probability `failureRate`. It keeps its own ledger
 * (simulated_payment_charges, one row per key) in the shop's database, as a real provider keeps one on
 * its side, so every worker and the jobs process see the same charges.
 * Concurrency: the row is written after the wait with INSERT ... ON CONFLICT DO NOTHING, so of two
 * charges of one key at once, one writes and the other reads the outcome it wrote (in a statement of its
 * own: the INSERT's snapshot may predate the other's commit); a refund is a conditional UPDATE, so it
 * gives back one charge once.
 */
export function createSimulatedPaymentProvider(options: {
  db: Queryable
  latencyMs: number
  failureRate: number
}): PaymentProvider {
  const { db } = options
  return {
    async charge(key, amountCents) {
      if (options.latencyMs > 0) await sleep(options.latencyMs)
      const made = await insertProviderCharge(db, key, amountCents, Math.random() >= options.failureRate)
      // Charged before (or a moment ago, by a call that committed after this one's INSERT began: a new
      // statement sees it).
      return made ?? (await findProviderCharge(db, key)) ?? false
    },

    refund: (key) => refundProviderCharge(db, key),
  }
}
