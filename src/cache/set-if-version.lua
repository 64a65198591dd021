-- set-if-version: stores a freshly loaded cache entry only if nobody wrote the underlying data while
-- it was being loaded. Every write INCRs the version key before it deletes the entry, so a loader that
-- read the version before querying, and finds it changed now, holds data that may predate the write.
--
-- KEYS[1]  the entry, e.g. cache:v1:product:42
-- KEYS[2]  its version counter, e.g. cache:ver:product:42 (missing means version 0)
-- ARGV[1]  the version the loader read before it queried the database
-- ARGV[2]  the entry to store (JSON)
-- ARGV[3]  its time to live in milliseconds
-- returns  1 if stored, 0 if the version moved on (the entry is left alone)
local current = redis.call('GET', KEYS[2]) or '0'
if current ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
