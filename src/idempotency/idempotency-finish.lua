-- idempotency-finish: the owner of a key records its response, or gives the key up.
--
-- KEYS[1]  idem:{<userId>}:<key>
-- ARGV[1]  the owner token this request stored in idempotency-begin
-- ARGV[2]  the finished state JSON {"h", "t", "s", "b"}, or '' to give the key up (5xx: may be retried)
-- ARGV[3]  how long a finished response is replayed, in ms (24 hours)
-- returns  1 if this request still owned the key, 0 if its lock had expired and someone else holds it
local stored = redis.call('GET', KEYS[1])
if not stored or cjson.decode(stored).t ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
