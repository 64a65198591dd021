-- unlock-if-owner: deletes a lock only if it still holds our token, so a request whose lock expired
-- (and was taken by a retry) cannot delete the retry's lock.
--
-- KEYS[1]  the lock key, e.g. idem:{userId}:{key}
-- ARGV[1]  the token this request stored when it took the lock
-- returns  1 if the lock was ours and is now gone, 0 otherwise
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
