-- 005_gate_release_outbox: a cancelled or expired order that the Redis gate admitted gives its units back
-- to the gate exactly once, even if the process dies between Postgres' COMMIT and the Redis call. The
-- release's own transaction marks the order with the flash_sale_stock version its release produced; the
-- mark is cleared once the gate has the units, and the reconciler applies marks left behind
-- (src/redis-gate/release-to-gate.ts). The version lets the gate skip a release it was rebuilt after.
ALTER TABLE orders ADD COLUMN gate_release_version bigint; -- not null: the gate still has to get these units

-- The reconciler's scan for releases left behind, oldest first: only marked orders, so it stays empty
-- almost always.
CREATE INDEX orders_gate_release_pending_idx ON orders (updated_at) WHERE gate_release_version IS NOT NULL;
