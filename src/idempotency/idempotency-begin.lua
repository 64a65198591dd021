-- idempotency-begin: decides, in one round trip, what a request carrying an Idempotency-Key may do.
--
-- KEYS[1]  idem:{<userId>}:<key>  JSON, in one of three states:
--          {"h": request hash, "t": owner token}              in flight: the owner is running
--          {"h", "t", "s": status, "b": body}                 finished: replay "s" and "b"
--          {"h", "t", "u": 1}                                 outcome unknown: the owner answered 5xx,
--                                                             so its effect may have committed or not;
--                                                             Postgres' saved answer decides
-- ARGV[1]  this request's hash
-- ARGV[2]  what to store if the key is free: the in-flight lock {"h": hash, "t": token}, or, when the
--          answer is already known without running the request, the finished state {"h", "t", "s", "b"}
-- ARGV[3]  how long to keep ARGV[2] in ms (a lock frees the key if its owner dies; an answer is
--          replayed for 24 hours)
-- ARGV[4]  the outcome-unknown state this request was handed by an earlier call and for which it found
--          no saved answer in Postgres, or '': if the key still holds exactly that state, ARGV[2]
--          replaces it as if the key were free
-- returns  {'run'}            the key was free (or held the checked unknown state): ARGV[2] is stored
--          {'replay', json}   a finished request with the same hash: answer with its stored response
--          {'verify', json}   the outcome is unknown: look for the answer in Postgres, then call again
--                             with ARGV[4] = json
--          {'busy'}           the same request is still running elsewhere
--          {'reused'}         the key belongs to a different request
local stored = redis.call('GET', KEYS[1])
if not stored or stored == ARGV[4] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return {'run'}
end
local state = cjson.decode(stored)
if state.h ~= ARGV[1] then return {'reused'} end
if state.s then return {'replay', stored} end
if state.u then return {'verify', stored} end
return {'busy'}
