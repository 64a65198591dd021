-- gate-purchase: decides a flash-sale purchase in one atomic step, all under the sale's hash tag:
-- the Idempotency-Key (take it, replay it, or say it is busy, reused or needs Postgres), the rate
-- limits (per user and per sale, fixed windows), the sale window, the per-user limit and the stock;
-- every time in it is Redis' own clock (TIME), so workers whose clocks disagree decide alike;
-- an admitted buyer gets the units and a reservation token. Postgres still has the last word: the
-- token becomes an order only when a batch commits, and gate-confirm.lua then records the answer.
--
-- The gate admits only callers that know the same Redis server it was built under (field run_id): a
-- Redis restarted from its append-only file may have lost its last writes, so its gates, which still
-- bear the old server's run id, must be rebuilt from Postgres before they admit anyone.
--
-- KEYS[1]  sale:{<id>}:gate    hash: available, starts_ms, ends_ms, per_user_limit, fence, run_id
-- KEYS[2]  sale:{<id>}:users   hash: user id -> units the user holds (reserved + paid)
-- KEYS[3]  sale:{<id>}:tokens  sorted set: token -> deadline (ms); a token is "<userId>:<qty>:<uuid>"
-- KEYS[4]  sale:{<id>}:idem:<userId>:<key>  the key's JSON state, as in idempotency-begin.lua:
--          {"h","t"} in flight (t: the reservation token), {"h","t","s","b"} finished, {"h","t","u":1}
--          outcome unknown; unused without a key (ARGV[7] = '')
-- KEYS[5]  sale:{<id>}:rl:user:<userId>  the buyer's counter in this sale's current window
-- KEYS[6]  sale:{<id>}:rl:sale            the sale's counter in its current window
-- KEYS[7]  sale:{<id>}:decided  set: buyers admitted from the sale's waiting room who bought
--          (src/purchase/queue/); untouched for a sale without one
-- ARGV[1]  user id
-- ARGV[2]  quantity
-- ARGV[3]  for a sale with a waiting room, the end of the buyer's lease (ms, from its signed admission):
--          past it (Redis' clock) the buyer is refused; '' for a sale without one
-- ARGV[4]  the reservation token to record
-- ARGV[5]  how long the token lives (ms): after its deadline (Redis' clock), the reconciler may
--          return the units
-- ARGV[6]  the run id of the Redis server as the caller knows it ('' when it does not know it yet)
-- ARGV[7]  the request's hash, or '' for a request without an Idempotency-Key
-- ARGV[8]  how long the in-flight state lives if its worker dies (ms)
-- ARGV[9]  the outcome-unknown state this request checked in Postgres and found no answer for, or '':
--          if the key still holds exactly that state, it counts as free
-- ARGV[10] the rate-limit window (ms): a counter starts at its first request and lives one window
-- ARGV[11] the per-user limit per window; ARGV[12] the per-sale limit per window ('' : no limits)
-- ARGV[13] how long a final refusal is replayed (ms)
-- ARGV[14] the finished state of a SOLD_OUT answer; ARGV[15] of not started; ARGV[16] of ended
-- returns  {'admitted', available}
--          {'sold_out', available, askPostgres} / {'per_user_limit', available, askPostgres}:
--              askPostgres 1 when the key was missing while the buyer holds units of this sale
--              (Redis may have forgotten the key of an order): nothing is stored, the caller replays
--              Postgres' saved answer if there is one; otherwise a SOLD_OUT is stored under the key
--          {'not_started'} {'ended'}  (stored under the key, like SOLD_OUT: they are final)
--          {'not_admitted'}  the waiting room's lease has ended (nothing stored under the key)
--          {'rate_limited', position of the exceeded limit (1 user, 2 sale), ms until its window ends}
--          {'gate_missing'}  missing or stale: fail closed, rebuild it from Postgres and ask again
--          {'replay', json} {'verify', json} {'busy'} {'reused'}  as idempotency-begin.lua
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local keyed = ARGV[7] ~= ''
local fresh = false
if keyed then
  local stored = redis.call('GET', KEYS[4])
  if stored and stored ~= ARGV[9] then
    local state = cjson.decode(stored)
    if state.h ~= ARGV[7] then return {'reused'} end
    if state.s then return {'replay', stored} end
    if state.u then return {'verify', stored} end
    -- In flight, but its token is not: the attempt ended and Redis never heard how (its confirm was
    -- lost with Redis' last writes, or the gate was rebuilt since). Postgres knows; no need to wait
    -- for the lock to lapse.
    if state.t and not redis.call('ZSCORE', KEYS[3], state.t) then return {'verify', stored} end
    return {'busy'}
  end
  fresh = not stored
end

local queued = ARGV[3] ~= ''
if queued and now >= tonumber(ARGV[3]) then return {'not_admitted'} end

if ARGV[11] ~= '' then
  for i = 5, 6 do
    local count = redis.call('INCR', KEYS[i])
    if count == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[10]) end
    if count > tonumber(ARGV[i + 6]) then return {'rate_limited', i - 4, redis.call('PTTL', KEYS[i])} end
  end
end

local function final(answer, state)
  if keyed then redis.call('SET', KEYS[4], state, 'PX', ARGV[13]) end
  return {answer}
end

local gate = redis.call('HMGET', KEYS[1], 'available', 'starts_ms', 'ends_ms', 'per_user_limit', 'run_id',
  'expire_ms')
if not gate[1] or gate[5] ~= ARGV[6] then return {'gate_missing'} end
local available = tonumber(gate[1])
local quantity = tonumber(ARGV[2])
if now < tonumber(gate[2]) then return final('not_started', ARGV[15]) end
if now >= tonumber(gate[3]) then return final('ended', ARGV[16]) end
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local askPostgres = (keyed and fresh and held > 0) and 1 or 0
if available < quantity then
  if askPostgres == 0 and keyed then redis.call('SET', KEYS[4], ARGV[14], 'PX', ARGV[13]) end
  return {'sold_out', available, askPostgres}
end
if held + quantity > tonumber(gate[4]) then return {'per_user_limit', available, askPostgres} end
redis.call('HINCRBY', KEYS[1], 'available', -quantity)
redis.call('HINCRBY', KEYS[2], ARGV[1], quantity)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[4])
-- The buyer's admission is used: the waiting room's next round gives its slot to the next place.
if queued then redis.call('SADD', KEYS[7], ARGV[1]) end
-- The users, tokens and decided keys go when the gate does (a gate built before keys expired has no expire_ms).
if gate[6] then
  for _, key in ipairs(queued and {KEYS[2], KEYS[3], KEYS[7]} or {KEYS[2], KEYS[3]}) do
    if redis.call('PTTL', key) == -1 then redis.call('PEXPIREAT', key, gate[6]) end
  end
end
if keyed then
  redis.call('SET', KEYS[4], cjson.encode({h = ARGV[7], t = ARGV[4]}), 'PX', ARGV[8])
end
return {'admitted', available - quantity}
