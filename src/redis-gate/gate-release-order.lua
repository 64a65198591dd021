-- gate-release-order: a cancelled or expired sale order releases its units to the gate and to the
-- buyer's per-user units. Called once per order, after Postgres committed the status change.
--
-- KEYS[1]  sale:{<id>}:gate
-- KEYS[2]  sale:{<id>}:users
-- ARGV[1]  user id
-- ARGV[2]  quantity
-- returns  1 if the gate was there to take them, 0 if it is missing (a rebuild will read Postgres)
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'available', ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[1], -tonumber(ARGV[2]))
return 1
