-- queue-join: takes a buyer's place in a sale's waiting room, or finds the place it already has (a second
-- tab, a reload, a retry: one buyer, one place).
-- A fifo place taken before the start is ordered by when nginx read the join (Queue-Arrival: its clock's
-- ms, then its own count of joins), not by when this script runs: two workers may run two joins in either
-- order, and the buyer who reached the edge first must stay first. An arrival more than 5 s away from
-- Redis' clock (TIME) is not believed (a request that did not come through nginx, or an nginx whose
-- clock is off): Redis' clock and the room's own count stand in.
-- Once admissions began, no place is inserted before the admission cursor: a fifo join that reached the
-- edge before a place already admitted goes first among the places still waiting, and a raffle's place
-- goes to the back.
-- A raffle's places taken before the draw get a score from the sale's secret seed (SHA-1 of seed and user
-- id: random to anyone without the seed, the same on every retry); the draw is fixed when the first
-- admission round runs (queue-admit.lua sets `started`), and every place taken after it queues behind the
-- drawn ones in arrival order, so the ranks of places already admitted never move.
--
-- KEYS[1]  sale:{<id>}:queue        sorted set: user id -> score (fifo: arrival; raffle: the draw)
-- KEYS[2]  sale:{<id>}:queue:meta   hash: seq (places taken), cursor (places admitted), started, closed
-- ARGV[1]  user id
-- ARGV[2]  'fifo' or 'raffle'
-- ARGV[3]  the raffle's seed ('' for fifo)
-- ARGV[4]  the sale's end (ms): no place is taken once it has passed
-- ARGV[5]  when the keys expire (ms since the epoch): the sale's end plus a grace
-- ARGV[6]  when nginx read the join (ms since the epoch), or ''; ARGV[7] nginx's count of joins, or ''
-- returns  {'joined', rank (0-based), cursor, places, started}: a new place (never admitted yet);
--          {'known'}: the buyer had a place already (queue-place.lua says where it stands now);
--          {'ended'} or {'closed'}
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if now >= tonumber(ARGV[4]) then return {'ended'} end
local meta = redis.call('HMGET', KEYS[2], 'cursor', 'started', 'closed')
local cursor = tonumber(meta[1] or '0')
local started = meta[2] == '1'
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {'known'} end
if meta[3] == '1' then return {'closed'} end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
local score
if ARGV[2] == 'raffle' then
  if started then
    -- Behind every place there is (places after the draw start at 2^52, above every drawn one).
    local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
    score = math.max(last[2] and tonumber(last[2]) + 1 or 0, 4503599627370496)
  else
    -- The draw: 52 bits of the hash of the seed and the user id.
    score = tonumber(string.sub(redis.sha1hex(ARGV[3] .. ':' .. ARGV[1]), 1, 13), 16)
  end
else
  local arrival, n = tonumber(ARGV[6]), tonumber(ARGV[7])
  if not arrival or not n or math.abs(arrival - now) > 5000 then arrival, n = now, seq end
  -- The ms first (several nginx instances count apart), then the count within it.
  score = arrival * 1000 + n % 1000
  -- A join that reached the edge before a place already admitted (its worker ran it late) goes first
  -- among the places still waiting: never before the cursor, where it would never be admitted.
  if cursor > 0 then
    local admitted = redis.call('ZRANGE', KEYS[1], cursor - 1, cursor - 1, 'WITHSCORES')
    if admitted[2] and score <= tonumber(admitted[2]) then score = tonumber(admitted[2]) + 0.5 end
  end
end
redis.call('ZADD', KEYS[1], score, ARGV[1])
for i = 1, 2 do redis.call('PEXPIREAT', KEYS[i], ARGV[5]) end
return {'joined', redis.call('ZRANK', KEYS[1], ARGV[1]), cursor, redis.call('ZCARD', KEYS[1]), started and 1 or 0}
