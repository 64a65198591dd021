-- Sold out at the edge, nginx's side (OpenResty's lua-nginx-module, Debian's libnginx-mod-http-lua).
-- The jobs process says which running sales are sold out and who holds an order in each
-- (./sold-out-edge.ts, GET /edge/sold-out on its metrics server); one nginx worker fetches that a few
-- times a second into a shared dictionary that every nginx worker reads, and the purchase location asks
-- `purchase(saleId)` before it proxies: for a sold-out sale, nginx answers the API's 409 SOLD_OUT itself.
--
-- Shared dictionary `edge` (lua_shared_dict in nginx.conf):
--   fresh_until            number  nginx's clock (s) until which the state counts: a state not refreshed for
--                                  FRESH_S (the jobs process away) counts for nothing, and every sale goes
--                                  to the app again (fail open)
--   version                string  the state's ETag, sent back as If-None-Match
--   sold                   string  the sold-out sale ids, comma-separated (to reopen those left out next time)
--   sold:<id>              number  the sale's end (ms since the epoch); present while it is sold out
--   guest_refused:<id>     true    the sale is for registered accounts: a guest goes to the app (403 first)
--   orders:<id>            number  the order count the sale's retries below were written at
--   retry:<id>:<userId>:<key>  true  an order of the sale was answered under this user's Idempotency-Key:
--                                  a request sending it again is a retry, and goes to the app (a replay)
--   queued:<id>            number  the sale's end (ms): it sells through a waiting room, and an attempt
--                                  without an admission is answered 403 NOT_ADMITTED
--   queued                 string  those sale ids, comma-separated (as `sold`)
-- Shared dictionary `edge_counts`, kept apart so GET /edge lists it without walking every retry:
--   arrivals               number  waiting-room joins this nginx stamped (stamp_arrival)
--   <id>                   number  purchase attempts this nginx answered SOLD_OUT for the sale
--   refused:<id>           number  purchase attempts this nginx answered NOT_ADMITTED for the sale

local cjson = require "cjson.safe"
local base64 = require "ngx.base64"

local dict = ngx.shared.edge
local counts = ngx.shared.edge_counts
local POLL_S = 0.25
local FRESH_S = 2
local GRACE_S = 60

local M = {}

-- One GET over HTTP/1.0 (the server closes the connection after its answer) to a Unix socket. Returns
-- status, headers, body.
local function http_get(socket, path, etag)
  local sock = ngx.socket.tcp()
  sock:settimeouts(500, 1000, 5000)
  local ok, err = sock:connect(socket)
  if not ok then return nil, err end
  local request = "GET " .. path .. " HTTP/1.0\r\nHost: edge\r\n"
  if etag then request = request .. "If-None-Match: " .. etag .. "\r\n" end
  ok, err = sock:send(request .. "\r\n")
  if not ok then sock:close() return nil, err end
  local line
  line, err = sock:receive("*l")
  local status = line and tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  if not status then sock:close() return nil, err or "not HTTP" end
  local headers = {}
  while true do
    line, err = sock:receive("*l")
    if not line then sock:close() return nil, err end
    if line == "" then break end
    local name, value = line:match("^([^:]+):%s*(.*)$")
    if name then headers[name:lower()] = value end
  end
  local body = ""
  if status == 200 then
    local length = tonumber(headers["content-length"])
    if length then body, err = sock:receive(length) else body, err = sock:receive("*a") end
    if not body then sock:close() return nil, err end
  end
  sock:close()
  return status, headers, body
end

-- Marks `<kind>:<id>` (the sale's end, ms) for every sale of `sales`, after `each(sale, id, ttl)` when given,
-- keeps their ids as `<kind>`, and drops the marks of the sales of the last list that this one left out.
local function mark(kind, sales, each)
  local now = ngx.now()
  local marked, ids = {}, {}
  for _, sale in ipairs(sales) do
    local id = tostring(sale.id)
    local ttl = math.max(1, math.ceil(sale.endsAtMs / 1000 - now) + GRACE_S)
    if each then each(sale, id, ttl) end
    if sale.registeredOnly then dict:set("guest_refused:" .. id, true, ttl) end
    dict:set(kind .. ":" .. id, sale.endsAtMs, ttl)
    marked[id] = true
    ids[#ids + 1] = id
  end
  for id in (dict:get(kind) or ""):gmatch("[^,]+") do
    if not marked[id] then dict:delete(kind .. ":" .. id) end
  end
  dict:set(kind, table.concat(ids, ","))
end

-- Writes a new state: marks its sales sold out (writing the retries of a sale whose orders changed) and
-- its sales with a waiting room; the sales of the last state left out of this one reopen.
local function apply(state, version)
  mark("sold", state.sales, function(sale, id, ttl)
    if dict:get("orders:" .. id) ~= sale.orders then
      for _, retry in ipairs(sale.retries) do dict:set("retry:" .. id .. ":" .. retry, true, ttl) end
      dict:set("orders:" .. id, sale.orders, ttl)
    end
  end)
  mark("queued", state.queued or {})
  dict:set("version", version)
end

local function poll(premature, socket)
  if premature then return end
  local status, headers, body = http_get(socket, "/edge/sold-out", dict:get("version"))
  if status == 200 then
    local state = cjson.decode(body)
    if type(state) ~= "table" or type(state.sales) ~= "table" then
      ngx.log(ngx.WARN, "edge: the sold-out state could not be read")
      return
    end
    apply(state, headers.etag)
  elseif status ~= 304 then
    -- Left to lapse: after FRESH_S without an answer every sale goes to the app again.
    ngx.log(ngx.INFO, "edge: no sold-out state from the jobs process: ", status or headers)
    return
  end
  dict:set("fresh_until", ngx.now() + FRESH_S)
end

-- Called from init_worker_by_lua: the first nginx worker polls the jobs process through nginx's edge server
-- on `socket` ("unix:<path>"), which proxies to it.
function M.start(socket)
  if ngx.worker.id() ~= 0 then return end
  local ok, err = ngx.timer.every(POLL_S, poll, socket)
  if not ok then ngx.log(ngx.ERR, "edge: cannot start polling: ", err) end
end

-- The bearer's user id and whether it is a guest, read from the token's payload WITHOUT checking its
-- signature: it only routes (a retry to the app, which verifies the token); a forged token can
-- learn no more than that the sale is sold out, which GET /api/sales/:id says to anyone.
local function bearer(authorization)
  local payload = authorization and authorization:match("^Bearer [%w_-]+%.([%w_-]+)%.[%w_-]+$")
  local claims = payload and cjson.decode(base64.decode_base64url(payload) or "")
  if type(claims) ~= "table" or type(claims.sub) ~= "string" then return nil end
  return claims.sub, claims.guest == true
end

local function answer(status, code, message)
  local body = '{"code":"' .. code .. '","message":"' .. message .. '"}'
  ngx.status = status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.header["Content-Length"] = #body
  ngx.header["X-Request-Id"] = ngx.var.request_id
  ngx.print(body)
  return ngx.exit(status)
end

-- An admission as the app signs it (src/purchase/queue/waiting-room.ts): `<lease end ms>.<43 base64url>`.
-- Only its shape is checked here; its signature and its lease are the app's and Redis' to judge.
local function admission_shaped(value)
  return value ~= nil and value:match("^%d%d%d%d%d%d%d%d%d%d%d%d%d%.[%w_-]+$") ~= nil and #value == 57
end

-- In the purchase location's access phase (after limit_req): answers 403 NOT_ADMITTED for an attempt at a
-- sale with a waiting room that carries no admission, 409 SOLD_OUT for a sale sold out at the edge, or
-- returns and lets nginx proxy the request to a worker. The app checks in the same order.
function M.purchase(sale_id)
  if not sale_id or (dict:get("fresh_until") or 0) < ngx.now() then return end
  local now_ms = ngx.now() * 1000
  local queued_ends = dict:get("queued:" .. sale_id)
  local queued = queued_ends and queued_ends > now_ms
  local ends_ms = dict:get("sold:" .. sale_id)
  local sold = ends_ms and ends_ms > now_ms
  if not queued and not sold then return end
  -- Without a token the app answers 401; a guest at a registered-only sale, 403.
  local user, guest = bearer(ngx.var.http_authorization)
  if not user or (guest and dict:get("guest_refused:" .. sale_id)) then return end
  if queued and not admission_shaped(ngx.var.http_waiting_room_admission) then
    counts:incr("refused:" .. sale_id, 1, 0, 86400)
    return answer(403, "NOT_ADMITTED", "flash sale " .. sale_id ..
      " sells through a waiting room: join it (POST /api/sales/" .. sale_id .. "/queue) and buy when admitted")
  end
  if not sold then return end
  -- The key of an order of the sale, sent again by its buyer: a retry of that purchase, which the app replays.
  -- Any other key (a buyer's new attempt, or a retry of a refusal) hears what the app would say.
  local key = ngx.var.http_idempotency_key
  if key and dict:get("retry:" .. sale_id .. ":" .. user .. ":" .. key) then return end
  counts:incr(sale_id, 1, 0, 86400)
  return answer(409, "SOLD_OUT", "flash sale " .. sale_id .. " has no units left")
end

-- In the waiting-room location's access phase: stamps the join with when nginx read it (ms, nginx's clock)
-- and its number among every request this nginx stamped (a counter shared by its workers), as
-- `Queue-Arrival: <ms>.<n>`, replacing a header of that name a client sent. A fifo room orders its places
-- by it (src/purchase/queue/queue-join.lua): the order in which joins reached the edge, which two workers
-- running them in the other order cannot change, and which a millisecond's ties do not blur.
function M.stamp_arrival()
  local n = counts:incr("arrivals", 1, 0)
  ngx.req.set_header("Queue-Arrival", string.format("%d.%d", math.floor(ngx.now() * 1000), n or 0))
end

-- GET /edge on the admin server: what this nginx knows, for operators and tests.
function M.status()
  local answered, refused = {}, {}
  for _, key in ipairs(counts:get_keys(0)) do
    if key == "arrivals" then goto continue end
    local id = key:match("^refused:(%d+)$")
    local list = id and refused or answered
    list[#list + 1] = cjson.encode(id or key) .. ":" .. (counts:get(key) or 0)
    ::continue::
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.print('{"fresh":', tostring((dict:get("fresh_until") or 0) >= ngx.now()),
    ',"version":', cjson.encode(dict:get("version") or ""),
    ',"soldOut":[', dict:get("sold") or "", '],"queued":[', dict:get("queued") or "",
    '],"answered":{', table.concat(answered, ","), '},"notAdmitted":{', table.concat(refused, ","), '}}')
end

return M
