-- fixed-window: counts a request against several limits at once (per user, per sale, ...), each a
-- counter for the current time window, and stops at the first limit exceeded.
--
-- KEYS[1..n]  one counter per limit, named for the current window (rl:<scope>:<id>:<window index>)
-- ARGV[1]     window length in ms (a counter lives for two windows, then expires)
-- ARGV[2..n+1] the limit for each key, in the same order
-- returns     0 when the request is within every limit, else the position (1..n) of the first
--             limit it exceeded
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('PEXPIRE', key, 2 * tonumber(ARGV[1])) end
  if count > tonumber(ARGV[i + 1]) then return i end
end
return 0
