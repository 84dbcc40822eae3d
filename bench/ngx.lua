--- The OpenResty benchmark (bench/ngx.sh; issue 11 point 9), run INSIDE one
-- nginx worker: GET /bench?mode=connkit|raw&clients=C&count=N&port=P makes
-- N GETs of http://127.0.0.1:P/data.json (another server block of the same
-- nginx, keep-alive) from C light threads of this request, each sending its
-- next request when its last reply is in, and answers one result line:
--
--   mode=connkit clients=10 count=20000 seconds=1.234 cpu=1.200 p50_us=600 p90_us=900 failures=0
--
-- mode=connkit: through connkit's ngx transport (`account:get`, the api_token
-- account of bench/bench_account.lua: Authorization + X-Region headers).
-- mode=raw: the floor, the same request written directly on ngx.socket.tcp
-- with setkeepalive (same headers, the transport's Accept-Encoding line
-- among them; the reply read by Content-Length).
-- mode=transport (for the profile): connkit's ngx transport alone,
-- performing one prepared request again and again.
-- All share the worker's cosocket pools (lua_socket_pool_size in
-- bench/ngx.conf.in is larger than the clients, so no connection is closed
-- for lack of room). `seconds` is wall time inside the worker (CLOCK_MONOTONIC), `cpu` the worker's CPU time over the round (os.clock),
-- p50/p90 the per-request latency as seen by the light thread.
-- GET /bench/profile?...: the same connkit round under jit.profile, with
-- where the time goes, for a ratio below target.
local connkit = require "connkit"
local ffi = require "ffi"

ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
-- a monotonic clock to the microsecond (ngx.now has milliseconds)
local function clock()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local M = {}

local accounts = {} -- port -> account, per worker

local function account(port)
  local acct = accounts[port]
  if not acct then
    acct = dofile(BENCH_ROOT .. "/bench/bench_account.lua")(port)
    accounts[port] = acct
  end
  return acct
end

-- One request written directly on a cosocket: the floor.
local function raw_get(port, request)
  local sock = ngx.socket.tcp()
  sock:settimeouts(10000, 10000, 10000)
  local ok, err = sock:connect("127.0.0.1", port)
  if not ok then return nil, err end
  ok, err = sock:send(request)
  if not ok then sock:close() return nil, err end
  local line
  line, err = sock:receive("*l")
  if not line then sock:close() return nil, err end
  local status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  local length
  while true do
    line, err = sock:receive("*l")
    if not line then sock:close() return nil, err end
    if line == "" then break end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name and name:lower() == "content-length" then length = tonumber(value) end
  end
  local body = ""
  if length and length > 0 then
    body, err = sock:receive(length)
    if not body then sock:close() return nil, err end
  end
  sock:setkeepalive()
  return status, body
end

local function connkit_get(acct)
  local res, err = acct:get("/data.json")
  if not res then return nil, err end
  return res.status, res.body
end

local function percentile(sorted, q)
  if #sorted == 0 then return 0 end
  return sorted[math.max(1, math.ceil(#sorted * q))]
end

--- One round; returns the result line.
function M.round(mode, clients, count, port)
  local get
  if mode == "raw" then
    local request = ("GET /data.json HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer bench-token\r\n"
      .. "X-Region: us\r\nAccept: */*\r\nAccept-Encoding: deflate, gzip\r\n\r\n"):format(port)
    get = function() return raw_get(port, request) end
  elseif mode == "connkit" then
    local acct = account(port)
    assert(connkit.transport() == "ngx", "connkit does not use the ngx transport here")
    get = function() return connkit_get(acct) end
  elseif mode == "transport" then
    -- the ngx transport alone: one prepared request performed again and
    -- again (what connkit adds above the transport is left out)
    local t = require "connkit.transport.ngx"
    local spec = t.of_request(account(port):prepare { url = "/data.json" })
    get = function()
      local res = t.perform(spec)
      return res and res.status
    end
  else
    error("mode must be raw, transport or connkit")
  end
  local left, failures, lat = count, 0, {}
  local function client()
    while left > 0 do
      left = left - 1
      local t0 = clock()
      local status = get()
      lat[#lat + 1] = clock() - t0
      if status ~= 200 then failures = failures + 1 end
    end
  end
  local c0, t0 = os.clock(), clock()
  local threads = {}
  for i = 1, clients do threads[i] = ngx.thread.spawn(client) end
  for i = 1, clients do ngx.thread.wait(threads[i]) end
  local seconds, cpu = clock() - t0, os.clock() - c0
  table.sort(lat)
  return ("mode=%s clients=%d count=%d seconds=%.4f cpu=%.4f p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f failures=%d")
    :format(mode, clients, count, seconds, cpu, percentile(lat, 0.5) * 1e6, percentile(lat, 0.9) * 1e6,
      percentile(lat, 0.99) * 1e6, lat[#lat] * 1e6, failures)
end

--- A round (mode raw or connkit) under LuaJIT's sampling profiler (jit.profile, 1 ms):
-- where the samples fell (the innermost function with its line, and the VM
-- state: N compiled code, I interpreter, C a C function, G garbage
-- collector, J the JIT compiler), most first, as text. Time nginx spends
-- outside Lua (epoll, the upstream's side) is in the wall time only.
function M.profile(mode, clients, count, port)
  local jp = require "jit.profile"
  local funcs, lines, states, total = {}, {}, {}, 0
  jp.start("li1", function(thread, samples, vmstate)
    local f = jp.dumpstack(thread, "F", 1)
    local l = jp.dumpstack(thread, "l", 1)
    funcs[f] = (funcs[f] or 0) + samples
    lines[l] = (lines[l] or 0) + samples
    states[vmstate] = (states[vmstate] or 0) + samples
    total = total + samples
  end)
  local ok, line = pcall(M.round, mode, clients, count, port)
  jp.stop()
  if not ok then error(line, 0) end
  local function top(t, n)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return t[a] > t[b] end)
    local out = {}
    for i = 1, math.min(n, #keys) do
      out[#out + 1] = ("%6.1f%%  %s"):format(t[keys[i]] * 100 / total, keys[i])
    end
    return table.concat(out, "\n")
  end
  return table.concat({ line, ("samples: %d (1 ms each, while Lua runs)"):format(total),
    "by VM state:", top(states, 5), "by function:", top(funcs, 25), "by line:", top(lines, 25) }, "\n")
end

--- The content handler of /bench and /bench/profile.
function M.handle(profile)
  local args = ngx.req.get_uri_args()
  local clients = tonumber(args.clients) or 10
  local count = tonumber(args.count) or 10000
  local port = assert(tonumber(args.port), "port")
  ngx.header["Content-Type"] = "text/plain"
  if profile then
    ngx.say(M.profile(args.mode or "connkit", clients, count, port))
  else
    ngx.say(M.round(args.mode, clients, count, port))
  end
end

return M
