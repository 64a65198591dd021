-- 008_payments: what the shop charged for each order, and what it gave back. The shop charges an order
-- under its id as the idempotency key, so the provider makes one charge per order however often, and
-- however concurrently, it is asked. A charge the order cannot use (it expired or was cancelled while
-- the charge ran, or its buyer never came back after a failed payment) is refunded, and the refund is
-- recorded here. Without this table a charge could be taken for an order that is then released.
CREATE TABLE payments (
  order_id      uuid PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
  amount_cents  bigint NOT NULL CHECK (amount_cents >= 0),
  charged_at    timestamptz NOT NULL DEFAULT now(),
  refunded_at   timestamptz,
  refund_reason text CHECK (refund_reason IN ('expired', 'cancelled'))
);
CREATE INDEX payments_to_refund ON payments (order_id) WHERE refunded_at IS NULL;

-- The simulated payment provider's own ledger (src/orders/payment-provider.ts), a stand-in for the card
-- processor's side: one row per idempotency key, whatever the number of calls.
CREATE TABLE simulated_payment_charges (
  key          text PRIMARY KEY,
  amount_cents bigint NOT NULL,
  charged      boolean NOT NULL,
  refunded     boolean NOT NULL DEFAULT false,
  created_at   timestamptz NOT NULL DEFAULT now(),
  CHECK (charged OR NOT refunded)
);
