-- queue-admit: one admission round of a sale's waiting room (the jobs process runs it a few times a second).
-- Admits the next places in rank order, as many as keep the buyers admitted and not yet decided at most
-- k x the units left; a place whose lease passed without a purchase is dropped and its slot goes to the
-- next one, so abandoned places never stall the queue. Every time in it is Redis' clock (TIME).
--
-- KEYS[1]  sale:{<id>}:queue          sorted set: user id -> score (queue-join.lua)
-- KEYS[2]  sale:{<id>}:queue:meta     hash: seq, cursor, started, closed
-- KEYS[3]  sale:{<id>}:admitted       sorted set: user id -> the end of its lease (ms)
-- KEYS[4]  sale:{<id>}:decided        set: admitted users who bought (gate-purchase.lua adds them)
-- ARGV[1]  the sale's start (ms): nothing is admitted before it
-- ARGV[2]  k: how many undecided buyers per unit left (e.g. 1.5)
-- ARGV[3]  the lease (ms): how long an admitted buyer has to buy
-- ARGV[4]  units left (the gate's count, or Postgres' row)
-- ARGV[5]  when the keys expire (ms since the epoch)
-- returns  {state ('upcoming' | 'open' | 'closed'), cursor, places, admitted now, lapsed (leases that
--          ended without a purchase), undecided}
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local places = redis.call('ZCARD', KEYS[1])
if now < tonumber(ARGV[1]) then return {'upcoming', 0, places, 0, 0, 0} end
redis.call('HSET', KEYS[2], 'started', 1)
local lapsed = 0
for _, user in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  if redis.call('SISMEMBER', KEYS[4], user) == 0 then lapsed = lapsed + 1 end
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local undecided = 0
for _, user in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if redis.call('SISMEMBER', KEYS[4], user) == 0 then undecided = undecided + 1 end
end
local remaining = tonumber(ARGV[4])
local cursor = tonumber(redis.call('HGET', KEYS[2], 'cursor') or '0')
if remaining <= 0 then
  redis.call('HSET', KEYS[2], 'closed', 1)
  return {'closed', cursor, places, 0, lapsed, undecided}
end
-- Units came back (a reservation expired, an order was cancelled): the queue goes on.
redis.call('HSET', KEYS[2], 'closed', 0)
local slots = math.floor(tonumber(ARGV[2]) * remaining) - undecided
local admit = math.min(slots, places - cursor)
if admit > 0 then
  local deadline = now + tonumber(ARGV[3])
  for _, user in ipairs(redis.call('ZRANGE', KEYS[1], cursor, cursor + admit - 1)) do
    redis.call('ZADD', KEYS[3], deadline, user)
  end
  cursor = redis.call('HINCRBY', KEYS[2], 'cursor', admit)
  for i = 3, 4 do redis.call('PEXPIREAT', KEYS[i], ARGV[5]) end
else
  admit = 0
end
return {'open', cursor, places, admit, lapsed, undecided}
