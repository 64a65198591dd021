-- queue-join: takes a buyer's place in a sale's waiting room, or finds the place it already has (a second
-- tab, a reload, a retry: one buyer, one place). Every time in it is Redis' clock (TIME).
-- A raffle's places taken before the draw get a score from the sale's secret seed (SHA-1 of seed and user
-- id: random to anyone without the seed, the same on every retry); the draw is fixed when the first
-- admission round runs (queue-admit.lua sets `started`), and every place taken after it queues behind the
-- drawn ones in arrival order, so the ranks of places already admitted never move.
--
-- KEYS[1]  sale:{<id>}:queue        sorted set: user id -> score (fifo: arrival number; raffle: the draw)
-- KEYS[2]  sale:{<id>}:queue:meta   hash: seq (places taken), cursor (places admitted), started, closed
-- ARGV[1]  user id
-- ARGV[2]  'fifo' or 'raffle'
-- ARGV[3]  the raffle's seed ('' for fifo)
-- ARGV[4]  the sale's end (ms): no place is taken once it has passed
-- ARGV[5]  when the keys expire (ms since the epoch): the sale's end plus a grace
-- returns  {'joined', rank (0-based), cursor, places, started}  or  {'ended'} or {'closed'}
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if now >= tonumber(ARGV[4]) then return {'ended'} end
local meta = redis.call('HMGET', KEYS[2], 'cursor', 'started', 'closed')
local cursor = tonumber(meta[1] or '0')
local started = meta[2] == '1'
local joined = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not joined then
  if meta[3] == '1' then return {'closed'} end
  local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
  local score = seq
  if ARGV[2] == 'raffle' then
    -- 2^52 and above: after the draw, in arrival order; below: the draw (52 bits of the hash).
    if started then score = 4503599627370496 + seq
    else score = tonumber(string.sub(redis.sha1hex(ARGV[3] .. ':' .. ARGV[1]), 1, 13), 16) end
  end
  redis.call('ZADD', KEYS[1], score, ARGV[1])
  for i = 1, 2 do redis.call('PEXPIREAT', KEYS[i], ARGV[5]) end
end
return {'joined', redis.call('ZRANK', KEYS[1], ARGV[1]), cursor, redis.call('ZCARD', KEYS[1]), started and 1 or 0}
