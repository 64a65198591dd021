-- gate-admit: the flash-sale stock gate. In one atomic step it checks the sale window, the buyer's
-- per-user limit and the remaining units, then takes the units and records a reservation token.
-- Postgres still has the last word: the token becomes an order only when a batch commits.
--
-- The gate admits only callers that know the same Redis server it was built under (field run_id): a
-- Redis restarted from its append-only file may have lost its last writes, so its gates, which still
-- bear the old server's run id, must be rebuilt from Postgres before they admit anyone.
--
-- KEYS[1]  sale:{<id>}:gate    hash: available, starts_ms, ends_ms, per_user_limit, fence, run_id
-- KEYS[2]  sale:{<id>}:users   hash: user id -> units the user holds (reserved + paid)
-- KEYS[3]  sale:{<id>}:tokens  sorted set: token -> deadline (ms); a token is "<userId>:<qty>:<uuid>"
-- ARGV[1]  user id
-- ARGV[2]  quantity
-- ARGV[3]  now (ms since the epoch, from the app's clock)
-- ARGV[4]  the reservation token to record
-- ARGV[5]  the token's deadline (ms): after it, the reconciler may return the units
-- ARGV[6]  the run id of the Redis server as the caller knows it ('' when it does not know it yet)
-- returns  {code, available}: 1 admitted, 0 sold out, -1 gate missing or stale (fail closed: rebuild
--          it from Postgres), -2 not started, -3 ended, -4 per-user limit reached
local gate = redis.call('HMGET', KEYS[1], 'available', 'starts_ms', 'ends_ms', 'per_user_limit', 'run_id')
if not gate[1] or gate[5] ~= ARGV[6] then return {-1, 0} end
local available = tonumber(gate[1])
local now = tonumber(ARGV[3])
local quantity = tonumber(ARGV[2])
if now < tonumber(gate[2]) then return {-2, available} end
if now >= tonumber(gate[3]) then return {-3, available} end
if available < quantity then return {0, available} end
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if held + quantity > tonumber(gate[4]) then return {-4, available} end
redis.call('HINCRBY', KEYS[1], 'available', -quantity)
redis.call('HINCRBY', KEYS[2], ARGV[1], quantity)
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
return {1, available - quantity}
