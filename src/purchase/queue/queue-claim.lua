-- queue-claim: the Postgres path's lease check (the gate path makes it inside gate-purchase.lua): an
-- admitted buyer whose lease still runs by Redis' clock (TIME) counts as decided, so the next admission
-- round gives its slot to the next place.
--
-- KEYS[1]  sale:{<id>}:decided  set: admitted users who bought
-- ARGV[1]  user id
-- ARGV[2]  the end of the buyer's lease (ms), from its signed admission
-- returns  'claimed', or 'lapsed' once the lease has ended
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if now >= tonumber(ARGV[2]) then return 'lapsed' end
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[2]) + 86400000) end
return 'claimed'
