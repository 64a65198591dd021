-- gate-release-token: releases an admitted token's units to the gate, exactly once. Used when a batch
-- fails and by the reconciler for tokens that never became an order (their worker died).
--
-- KEYS[1]  sale:{<id>}:gate
-- KEYS[2]  sale:{<id>}:users
-- KEYS[3]  sale:{<id>}:tokens
-- ARGV[1]  the token "<userId>:<qty>:<uuid>"
-- returns  1 if the units went back, 0 if the token was not in flight (already confirmed or released)
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then return 0 end
local user, quantity = string.match(ARGV[1], '^([^:]+):(%d+):')
-- A gate rebuilt after a flush was computed from Postgres and never counted this token: leave it.
-- A gate that is gone (its sale ended long ago and its keys expired) has no count to give back to, and
-- no users key to lower: writing one would leave a key that never expires.
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'available', quantity)
  redis.call('HINCRBY', KEYS[2], user, -tonumber(quantity))
end
return 1
