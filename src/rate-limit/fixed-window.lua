-- fixed-window: counts a request against several limits at once (per user, per sale, ...), each a
-- counter that starts with its first request and lives one window, on Redis' clock (its expiry), so
-- workers whose clocks disagree share the same windows; it stops at the first limit exceeded.
--
-- KEYS[1..n]  one counter per limit (rl:<scope>:<id>)
-- ARGV[1]     window length in ms
-- ARGV[2..n+1] the limit for each key, in the same order
-- returns     0 when the request is within every limit, else the ms until the window of the first
--             limit it exceeded ends (at least 1)
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('PEXPIRE', key, ARGV[1]) end
  if count > tonumber(ARGV[i + 1]) then
    local left = redis.call('PTTL', key)
    if left < 1 then left = 1 end
    return left
  end
end
return 0
