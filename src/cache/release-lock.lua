-- release-lock: deletes a rebuild lock only if it still holds our token, so a loader whose lock
-- expired (and was taken by another worker) cannot release the other worker's lock.
--
-- KEYS[1]  the lock, e.g. cache:lock:product:42
-- ARGV[1]  the token this loader stored when it took the lock
-- returns  1 if the lock was ours and is now gone, 0 otherwise
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
