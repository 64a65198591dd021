-- idempotency-finish: the owner of a key records how its request ended, or gives the key up.
--
-- KEYS[1]  idem:{<userId>}:<key>
-- ARGV[1]  the owner token this request stored in idempotency-begin
-- ARGV[2]  the new state: finished {"h", "t", "s", "b"}; outcome unknown {"h", "t", "u": 1} (a 5xx: the
--          effect may have committed, the next attempt asks Postgres); or '' to give the key up (a 429:
--          nothing was done, a retry must run)
-- ARGV[3]  how long to keep ARGV[2], in ms (24 hours for an answer, minutes for an unknown outcome)
-- returns  1 if this request still owned the key, 0 if its lock had expired and someone else holds it
local stored = redis.call('GET', KEYS[1])
if not stored or cjson.decode(stored).t ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
