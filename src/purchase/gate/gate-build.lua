-- gate-build: creates a sale's gate from Postgres' numbers, fenced to the Redis server it is built on.
-- Used when a sale is created and to rebuild a gate that is missing (Redis came back empty) or stale
-- (built under another run id: Redis restarted, maybe without its last writes). A stale gate is
-- replaced whole, in this one atomic step: its available count, per-user units, tokens and applied
-- releases may all be missing writes. A current gate is left alone, so every worker may call this at once and one builds.
-- While the gate is missing or stale the sale answers 503 (fail closed), never "unlimited stock".
--
-- Deleting the tokens is right because the caller holds the sale row's lock and reads the fence under
-- it: a batch still in flight with one of those tokens commits after the lock, at a version above the
-- fence, so gate-confirm takes its units again; a batch that fails releases its token, finds it gone
-- and gives nothing back. Either way the new gate counts each unit once. The set of applied releases
-- starts empty too: a release at or below the new fence is skipped by its version (gate-release-order).
--
-- KEYS[1]  sale:{<id>}:gate
-- KEYS[2]  sale:{<id>}:users
-- KEYS[3]  sale:{<id>}:tokens
-- KEYS[4]  sale:{<id>}:released
-- ARGV[1]  run_id: the Redis server's run id as the caller knows it ('' when it does not know it)
-- ARGV[2]  available units (flash_sale_stock.available, read under the stock row's lock)
-- ARGV[3]  starts_ms
-- ARGV[4]  ends_ms
-- ARGV[5]  per_user_limit
-- ARGV[6]  fence: the flash_sale_stock.version those numbers belong to
-- ARGV[7]  expire_ms: when the sale's keys go (its end plus a grace, see stock-gate.ts); the gate keeps
--          it, so that a script creating one of the other keys later gives it the same end
-- ARGV[8]  the users holding units, as JSON: [userId, units, userId, units, ...] (from
--          sale_user_units): one argument however many there are (a sale may have 100,000 holders)
-- returns  1 if built, 0 if a gate of this run id existed already, -1 if refused (no run id given)
if ARGV[1] == '' then return -1 end
if redis.call('HGET', KEYS[1], 'run_id') == ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'available', ARGV[2], 'starts_ms', ARGV[3], 'ends_ms', ARGV[4],
  'per_user_limit', ARGV[5], 'fence', ARGV[6], 'run_id', ARGV[1], 'expire_ms', ARGV[7])
redis.call('PEXPIREAT', KEYS[1], ARGV[7])
local holders = cjson.decode(ARGV[8])
-- HSET takes many pairs at once; unpack() is bounded by Lua's stack (8,000), so a thousand at a time.
local chunk = 1000
for from = 1, #holders, chunk do
  redis.call('HSET', KEYS[2], unpack(holders, from, math.min(from + chunk - 1, #holders)))
end
if #holders > 0 then redis.call('PEXPIREAT', KEYS[2], ARGV[7]) end
return 1
