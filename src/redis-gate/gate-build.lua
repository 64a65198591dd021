-- gate-build: creates a sale's gate from Postgres' numbers, only if it does not exist. Used when a
-- sale is created and to rebuild after Redis lost its data; while the gate is missing the sale
-- answers 503 (fail closed), never "unlimited stock".
--
-- KEYS[1]  sale:{<id>}:gate
-- KEYS[2]  sale:{<id>}:users
-- ARGV[1]  available units (flash_sale_stock.available, read under the stock row's lock)
-- ARGV[2]  starts_ms
-- ARGV[3]  ends_ms
-- ARGV[4]  per_user_limit
-- ARGV[5]  fence: the flash_sale_stock.version those numbers belong to
-- ARGV[6..] pairs of user id, units held (from sale_user_units)
-- returns  1 if built, 0 if a gate existed already
if redis.call('HEXISTS', KEYS[1], 'available') == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'available', ARGV[1], 'starts_ms', ARGV[2], 'ends_ms', ARGV[3],
  'per_user_limit', ARGV[4], 'fence', ARGV[5])
for i = 6, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
return 1
