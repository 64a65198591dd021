-- gate-confirm: after a batch committed its orders, drops their tokens from the in-flight set.
-- A token that is no longer there was released meanwhile (the reconciler thought its worker dead)
-- or lost (the gate was rebuilt from Postgres, after a flush or a restart, and starts with no tokens).
-- If the gate was built from a Postgres state older than this batch (fence < batch version), the gate
-- counted those units as available, so they are taken again here; if it was built later, Postgres
-- already showed them sold.
--
-- KEYS[1]  sale:{<id>}:gate    (field fence: the flash_sale_stock.version the gate was built from)
-- KEYS[2]  sale:{<id>}:users
-- KEYS[3]  sale:{<id>}:tokens
-- ARGV[1]  the flash_sale_stock.version this batch's UPDATE produced
-- ARGV[2..] the batch's tokens
-- returns  the number of units re-taken
local fence = tonumber(redis.call('HGET', KEYS[1], 'fence') or '-1')
local retaken = 0
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[3], ARGV[i]) == 0 and fence >= 0 and tonumber(ARGV[1]) > fence then
    local user, quantity = string.match(ARGV[i], '^([^:]+):(%d+):')
    redis.call('HINCRBY', KEYS[1], 'available', -tonumber(quantity))
    redis.call('HINCRBY', KEYS[2], user, quantity)
    retaken = retaken + tonumber(quantity)
  end
end
return retaken
