-- queue-place: where a buyer stands in a sale's waiting room, by Redis' clock (TIME).
--
-- KEYS[1]  sale:{<id>}:queue  KEYS[2]  sale:{<id>}:queue:meta  KEYS[3]  sale:{<id>}:admitted
-- KEYS[4]  sale:{<id>}:decided
-- ARGV[1]  user id
-- returns  {'absent'}: no place;
--          {'waiting', rank (0-based), cursor, places, started, closed}: not admitted yet;
--          {'admitted', lease end (ms), decided (0/1), rank}: admitted and the lease still runs;
--          {'lapsed'}: admitted, and the lease passed (or the place was dropped) without a purchase
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
if not rank then return {'absent'} end
local meta = redis.call('HMGET', KEYS[2], 'cursor', 'started', 'closed')
local cursor = tonumber(meta[1] or '0')
if rank >= cursor then
  return {'waiting', rank, cursor, redis.call('ZCARD', KEYS[1]), meta[2] == '1' and 1 or 0, meta[3] == '1' and 1 or 0}
end
local lease = tonumber(redis.call('ZSCORE', KEYS[3], ARGV[1]) or '0')
if lease > now then return {'admitted', lease, redis.call('SISMEMBER', KEYS[4], ARGV[1]), rank} end
return {'lapsed'}
