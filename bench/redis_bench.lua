-- The Redis store benchmark (part of `make bench`, see bench/README.md), on
-- loopback against the spec peers (redis-server, oidc-provider):
--
--  1. account:token() on a valid token, memory / file / Redis store;
--  2. a full refresh cycle (account:refresh(): lock, read, token request,
--     fenced commit, unlock), memory / file / Redis store;
--  3. GETs of a protected resource on a valid token: Redis store against
--     memory store (target: overhead <= 5 %), and the Redis commands the
--     Redis store sent meanwhile (target: none);
--  4. 24 processes sharing one authorization-code account with rotating
--     refresh tokens and 4 s access tokens, refreshing in step: connkit's
--     Redis store against Nango's scheme (bench/redis_nango_baseline.lua: a
--     plain SET NX PX 10000 lock released with DEL, no owner, no fence);
--     token requests per expiry as oidc-provider counted them (target:
--     connkit exactly 1).
-- Knobs (env): REDIS_BENCH_TOKEN_N (20000), REDIS_BENCH_CYCLES (200),
-- REDIS_BENCH_GETS (2000), REDIS_BENCH_FLEET_SECONDS (20).
local helpers = require "helpers"
local connkit = require "connkit"
local core = require "connkit.core"
local socket = require "socket"
local account = require "support.redis_account"

local TOKEN_N = tonumber(os.getenv("REDIS_BENCH_TOKEN_N")) or 20000
local CYCLES = tonumber(os.getenv("REDIS_BENCH_CYCLES")) or 200
local GETS = tonumber(os.getenv("REDIS_BENCH_GETS")) or 2000
local FLEET_SECONDS = tonumber(os.getenv("REDIS_BENCH_FLEET_SECONDS")) or 20
local KEY = core.b64encode(core.random(32))
local summary_file = os.getenv("BENCH_SUMMARY")

local function say(s) io.stdout:write(s, "\n") io.stdout:flush() end
local function summary(s)
  say(s)
  if summary_file and summary_file ~= "" then
    local f = io.open(summary_file, "a")
    if f then f:write(s, "\n") f:close() end
  end
end

local r = helpers.peer("redis")
local op = helpers.peer("oidc")
local ok_run, err_run = pcall(function()
  local stores = {
    { "memory", function() return connkit.store.memory() end },
    { "file", function() return connkit.store.file(helpers.tmpdir("rbench"), { key = KEY }) end },
    { "redis", function() return connkit.store.redis { url = r.url, key = KEY } end },
  }

  -- 1 and 2: a client-credentials account per store
  local per = {}
  for _, s in ipairs(stores) do
    local name, make = s[1], s[2]
    local acct = account.account("cc", op.issuer, "bench-" .. name, make())
    assert(acct:token())
    local t0 = socket.gettime()
    for _ = 1, TOKEN_N do assert(acct:token()) end
    local tok_us = (socket.gettime() - t0) / TOKEN_N * 1e6
    for _ = 1, 10 do assert(acct:refresh()) end -- warm-up
    t0 = socket.gettime()
    for _ = 1, CYCLES do assert(acct:refresh()) end
    local cyc_ms = (socket.gettime() - t0) / CYCLES * 1e3
    per[name] = { token = tok_us, cycle = cyc_ms }
    say(("%-6s store: token() on a valid token %.2f us/call (%d calls); refresh cycle %.2f ms (%d cycles)")
      :format(name, tok_us, TOKEN_N, cyc_ms, CYCLES))
  end
  summary(("redis store: token() valid %.2f us (memory %.2f, file %.2f); refresh cycle %.2f ms (memory %.2f, file %.2f)")
    :format(per.redis.token, per.memory.token, per.file.token, per.redis.cycle, per.memory.cycle, per.file.cycle))

  -- 3: requests on a valid token, alternating runs, medians
  local function gets(acct)
    local t0 = socket.gettime()
    for _ = 1, GETS do
      local res = assert(acct:get("/api/me"))
      assert(res.status == 200)
    end
    return (socket.gettime() - t0) / GETS
  end
  local mem = account.account("cc", op.issuer, "bench-get-mem", connkit.store.memory())
  local red = account.account("cc", op.issuer, "bench-get-redis", connkit.store.redis { url = r.url, key = KEY })
  gets(mem) gets(red) -- warm-up (token fetched, connections open)
  r.cli("CONFIG", "RESETSTAT")
  local tm, tr = {}, {}
  for i = 1, 5 do tm[i] = gets(mem) tr[i] = gets(red) end
  local stats = r.cli("INFO", "commandstats")
  if os.getenv("REDIS_BENCH_DEBUG") then say(stats) end
  local redis_calls = 0
  for name, n in stats:gmatch("cmdstat_([%w|_]+):calls=(%d+)") do
    -- (CONFIG RESETSTAT, and redis-cli's AUTH and INFO, are the bench's own:
    -- the store's connection was opened and authenticated in the warm-up)
    if not name:find("^config") and name ~= "info" and name ~= "auth" then redis_calls = redis_calls + tonumber(n) end
  end
  table.sort(tm) table.sort(tr)
  local overhead = (tr[3] / tm[3] - 1) * 100
  summary(("redis store on a valid token: %.1f us/request vs %.1f us with the memory store: overhead %.1f %% "
    .. "(target <= 5 %%: %s); Redis commands during %d requests: %d (target 0: %s)")
    :format(tr[3] * 1e6, tm[3] * 1e6, overhead, overhead <= 5 and "OK" or "MISSED", 5 * GETS, redis_calls,
      redis_calls == 0 and "OK" or "MISSED"))

  -- 4: the fleet
  local function fleet(label, script, env_extra)
    local fop = op.new { access_ttl = 4 }
    local id = "bench-fleet-" .. label
    local store = connkit.store.redis { url = r.url, key = KEY }
    local acct = account.account("code", fop.issuer, id, store)
    local url = acct:authorize_url { redirect_uri = fop.endpoints.callback }
    assert(acct:finish_authorization(assert(fop.authorize(url))))
    if env_extra.NANGO then
      -- the baseline keeps its own plain JSON record: hand it the tokens
      local rec = assert(store.get(id))
      r.cli("SET", "nango:" .. id, require("connkit.json").encode(rec))
      store.put(id, nil)
    end
    fop.reset()
    local workers = {}
    local t0 = socket.gettime()
    for i = 1, 24 do
      local env = { RW_ISSUER = fop.issuer, RW_URL = r.url, RW_KEY = KEY, RW_ID = id, RW_GRANT = "code",
        RW_SECONDS = tostring(FLEET_SECONDS), RW_GAP = "0.1" }
      for k, v in pairs(env_extra) do env[k] = v end
      workers[i] = helpers.spawn("fleet" .. i, helpers.lua .. " " .. helpers.shell_quote(helpers.root .. "/" .. script),
        { env = helpers.child_env(env) })
    end
    local ok_n, fail_n = 0, 0
    for _, w in ipairs(workers) do
      while helpers.alive(w.pid) do socket.sleep(0.1) end
      local out = helpers.read_file(w.log) or ""
      ok_n = ok_n + (tonumber(out:match("ok=(%d+)")) or 0)
      fail_n = fail_n + (tonumber(out:match("fail=(%d+)")) or 0)
    end
    local elapsed = socket.gettime() - t0
    local reqs = fop.token_requests()
    local bad, expiries, last = 0, 0, nil
    for _, q in ipairs(reqs) do
      if q.status ~= 200 then bad = bad + 1 end
      -- a 4 s token is renewed when half its life is left, every 2 s: a
      -- request less than 1.5 s after the one before is for the same expiry
      if not last or q.time - last >= 1.5 then expiries = expiries + 1 end
      last = q.time
    end
    fop.stop()
    return #reqs / math.max(expiries, 1), #reqs, bad, ok_n, fail_n, elapsed
  end
  local c_rate, c_n, c_bad, c_ok, c_fail, c_t = fleet("connkit", "spec/support/redis_worker.lua", {})
  local n_rate, n_n, n_bad, n_ok, n_fail, n_t = fleet("nango", "spec/support/redis_worker.lua", { NANGO = "1",
    RW_STORE_SCRIPT = helpers.root .. "/bench/redis_nango_baseline.lua", NANGO_PORT = tostring(r.port),
    NANGO_PASSWORD = r.password or "" })
  summary(("24 processes, 4 s tokens, rotating refresh tokens: connkit %.2f token requests per expiry "
    .. "(%d in %.0f s, %d refused by the server; requests %d ok, %d failed; target 1: %s); Nango's scheme %.2f per expiry "
    .. "(%d in %.0f s, %d refused; requests %d ok, %d failed)")
    :format(c_rate, c_n, c_t, c_bad, c_ok, c_fail, (c_bad == 0 and c_rate == 1) and "OK" or "MISSED",
      n_rate, n_n, n_t, n_bad, n_ok, n_fail))
end)
helpers.stop_peers()
if not ok_run then
  io.stderr:write("redis bench: ", tostring(err_run), "\n")
  os.exit(1)
end
