-- idempotency-begin: decides, in one round trip, what a request carrying an Idempotency-Key may do.
--
-- KEYS[1]  idem:{<userId>}:<key>  JSON {"h": request hash, "t": owner token, "s": status, "b": body}
--          ("s" and "b" are present once the first request finished)
-- ARGV[1]  this request's hash
-- ARGV[2]  what to store if the key is free: the in-flight lock {"h": hash, "t": token}, or, when the
--          answer is already known without running the request, the finished state {"h", "t", "s", "b"}
-- ARGV[3]  how long to keep ARGV[2] in ms (a lock frees the key if its owner dies; an answer is
--          replayed for 24 hours)
-- returns  {'run'}            the key was free: ARGV[2] is stored (run the request, or answer it)
--          {'replay', json}   a finished request with the same hash: answer with its stored response
--          {'busy'}           the same request is still running elsewhere
--          {'reused'}         the key belongs to a different request
local stored = redis.call('GET', KEYS[1])
if not stored then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return {'run'}
end
local state = cjson.decode(stored)
if state.h ~= ARGV[1] then return {'reused'} end
if state.s then return {'replay', stored} end
return {'busy'}
