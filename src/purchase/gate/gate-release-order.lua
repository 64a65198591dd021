-- gate-release-order: a cancelled or expired sale order releases its units to the gate, and an expired
-- one also to the buyer's per-user units (a cancelled order's units keep counting), exactly once. Called after Postgres committed the release, by the process
-- that released the order and, for a release that process left pending (it died, Redis did not
-- answer), by the reconciler: one order may arrive twice, and the second time changes nothing.
-- A gate built from a Postgres state that already includes the release (version <= fence: it was
-- rebuilt between the release's COMMIT and this call) has the units: adding them again would count
-- them twice.
--
-- KEYS[1]  sale:{<id>}:gate      (field fence: the flash_sale_stock.version the gate was built from)
-- KEYS[2]  sale:{<id>}:users
-- KEYS[3]  sale:{<id>}:released  set: ids of the orders whose release this gate has applied
-- ARGV[1]  user id
-- ARGV[2]  quantity
-- ARGV[3]  order id
-- ARGV[4]  the flash_sale_stock.version the release produced
-- ARGV[5]  units the buyer's per-user count gets back (0 for a cancelled order)
-- returns  1 applied; 0 applied before (no-op); -1 skipped: the gate was built after the release;
--          -2 skipped: the gate is missing (its rebuild will read Postgres, release included)
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if tonumber(ARGV[4]) <= tonumber(redis.call('HGET', KEYS[1], 'fence') or '-1') then return -1 end
if redis.call('SADD', KEYS[3], ARGV[3]) == 0 then return 0 end
-- The set of applied releases goes when the gate does.
local expireMs = redis.call('HGET', KEYS[1], 'expire_ms')
if expireMs and redis.call('PTTL', KEYS[3]) == -1 then redis.call('PEXPIREAT', KEYS[3], expireMs) end
redis.call('HINCRBY', KEYS[1], 'available', ARGV[2])
if tonumber(ARGV[5]) > 0 then redis.call('HINCRBY', KEYS[2], ARGV[1], -tonumber(ARGV[5])) end
return 1
