-- gate-confirm: after a batch committed its orders, drops their tokens from the in-flight set and
-- records each keyed buyer's answer under its Idempotency-Key, in one call per sale and batch.
-- A token that is no longer there was released meanwhile (the reconciler thought its worker dead)
-- or lost (the gate was rebuilt from Postgres, after a flush or a restart, and starts with no tokens).
-- If the gate was built from a Postgres state older than a token's commit (fence < the version its
-- UPDATE produced), the gate counted those units as available, so they are taken again here; if it
-- was built later, Postgres already showed them sold.
-- An answer is recorded only while the key still holds its buyer's in-flight state (its "t" is the
-- buyer's reservation token): a key whose lock lapsed and that another attempt took is left alone.
--
-- KEYS[1]  sale:{<id>}:gate    (field fence: the flash_sale_stock.version the gate was built from)
-- KEYS[2]  sale:{<id>}:users
-- KEYS[3]  sale:{<id>}:tokens
-- KEYS[4..] sale:{<id>}:idem:<userId>:<key> of the keyed buyers, one per answer below
-- ARGV[1]  n, how many tokens follow
-- ARGV[2..2n+1] pairs: a token whose order committed, and the flash_sale_stock.version its batch's
--          UPDATE produced (0: re-take nothing, for the reconciler)
-- then, per key: the buyer's reservation token, the new state ('' frees the key), how long to keep it
-- returns  the number of units re-taken
local fence = tonumber(redis.call('HGET', KEYS[1], 'fence') or '-1')
local n = tonumber(ARGV[1])
local retaken = 0
for i = 2, 2 * n, 2 do
  if redis.call('ZREM', KEYS[3], ARGV[i]) == 0 and fence >= 0 and tonumber(ARGV[i + 1]) > fence then
    local user, quantity = string.match(ARGV[i], '^([^:]+):(%d+):')
    redis.call('HINCRBY', KEYS[1], 'available', -tonumber(quantity))
    redis.call('HINCRBY', KEYS[2], user, quantity)
    retaken = retaken + tonumber(quantity)
  end
end
for k = 4, #KEYS do
  local a = 2 * n + 2 + (k - 4) * 3
  local stored = redis.call('GET', KEYS[k])
  if stored and cjson.decode(stored).t == ARGV[a] then
    if ARGV[a + 1] == '' then
      redis.call('DEL', KEYS[k])
    else
      redis.call('SET', KEYS[k], ARGV[a + 1], 'PX', ARGV[a + 2])
    end
  end
end
return retaken
