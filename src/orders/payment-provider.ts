import { setTimeout as sleep } from 'node:timers/promises'

export interface PaymentProvider {
  /** Resolves true when the charge went through, false when the provider declined it. */
  charge(orderId: string, amountCents: number): Promise<boolean>
}

/**
 * A stand-in for a card processor, so the demo can show slow and failing payments: every charge takes
 * `latencyMs` and is declined with probability `failureRate`.
 */
export function createSimulatedPaymentProvider(options: {
  latencyMs: number
  failureRate: number
}): PaymentProvider {
  return {
    async charge() {
      if (options.latencyMs > 0) await sleep(options.latencyMs)
      return Math.random() >= options.failureRate
    },
  }
}
