-- connkit.store.redis inside nginx (issue 12 point 1): the resty.redis
-- client over cosockets, against a real redis-server (spec/peers/redis.lua)
-- and the scripted peer as the token endpoint (it counts the token requests
-- and the bearer tokens /resource received). A plain Lua process (this one,
-- with hiredis) and nginx workers share records and one account; Redis
-- paused or a lock held elsewhere leaves the worker answering /ping.
-- Scenarios: spec/nginx/redis_*.lua.
local helpers = require "helpers"
local openresty = require "peers.openresty"
local connkit = require "connkit"
local core = require "connkit.core"
local socket = require "socket"

local KEY = core.b64encode(core.random(32))

local sp, r
local conf_file

local function fresh_id(tag) return (tag or "ngx") .. "-" .. core.hex(core.random(4)) end

-- Token requests the scripted peer received for the run tag `run`.
local function token_requests(run)
  local n = 0
  for _, q in ipairs(sp.requests("/token/ok")) do
    if q.query.run == run then n = n + 1 end
  end
  return n
end

-- The bearer tokens /resource received since the last reset, as a set,
-- and how many calls.
local function bearers()
  local set, calls = {}, 0
  for _, q in ipairs(sp.requests("/resource")) do
    local tok = (q.headers.authorization or ""):match("^Bearer (.+)$")
    if tok then set[tok] = (set[tok] or 0) + 1 end
    calls = calls + 1
  end
  return set, calls
end

local function keys_of(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  return list
end

-- n concurrent /run/redis_call on p; every one must answer 200.
local function fleet_calls(p, n, args)
  for i, r in ipairs((p:run_all("redis_call", n, args))) do
    assert.are.equal(200, r.status, ("call %d of %d failed\n%s"):format(i, n, p:log_tail(30)))
  end
end

-- The plain Lua side of the fleet: the same integration and account id as
-- spec/nginx/redis_call.lua, on a hiredis store of the same server.
local function plain_account(args)
  return connkit.integration {
    name = "Redis fleet " .. args.name, key = "redisfleet", auth = "oauth2",
    base_url = "{base}", parameters = { base = { required = true } },
    oauth2 = { grant_type = "client_credentials", client_id = "fleet-client", client_secret = "fleet:s3cret",
      token_url = "{base}/token/ok?ttl=" .. args.ttl .. "&run=" .. args.run },
    refresh = { cooldown = 0.2 },
  }:account { id = args.name, parameters = { base = args.base },
    store = connkit.store.redis { url = r.url, key = KEY } }
end

-- A file holding the Redis URL and the store key, one a line: scenarios
-- read them from there (in the query they would show the password and the
-- key in nginx's log of the request line).
local conf_files = {}
conf_file = function(url, key)
  local k = url .. "\n" .. key
  if not conf_files[k] then
    local path = helpers.tmpdir("ngx-redis-conf") .. "/conf"
    helpers.write_file(path, k .. "\n", "644")
    conf_files[k] = path
  end
  return conf_files[k]
end

local function total_connections()
  return tonumber(r.cli("INFO", "stats"):match("total_connections_received:(%d+)"))
end

describe("connkit.store.redis inside nginx, 4 workers", function()
  local p

  lazy_setup(function()
    sp = helpers.peer("scripted")
    r = helpers.peer("redis")
    p = openresty.start(helpers, { workers = 4, shared_dicts = { fleet = "64k" } })
  end)
  lazy_teardown(function()
    if p then p.stop() end
  end)
  before_each(function() sp.reset() end)

  it("round-trips a record through resty.redis, reusing the worker's pooled connection", function()
    local id = fresh_id()
    local put = p:run("redis_store", { op = "put", conf = conf_file(r.url, KEY), id = id, token = "tok-1" })
    assert.is_true(put.ok, put.message)
    assert.is_true(put.resty, "the resty client was not used")
    local before = total_connections()
    for _ = 1, 20 do
      local got = p:run("redis_store", { op = "get", conf = conf_file(r.url, KEY), id = id })
      assert.is_true(got.ok, got.message)
      assert.are.equal("tok-1", got.access_token)
    end
    -- 20 requests, each with a store of its own: the connections came from
    -- the workers' pools (at most one new one per worker), not one each
    local opened = total_connections() - before
    assert.is_true(opened <= 4, ("%d new connections for 20 requests"):format(opened))
    -- the record in Redis is sealed: the token is not there in clear
    local raw = r.cli("HGET", "connkit:{" .. id .. "}:record", "data")
    assert.is_nil(raw:find("tok-1", 1, true))
    assert.matches("^CKR1", raw)
  end)

  it("sealed records written inside nginx open outside it with hiredis, and the reverse", function()
    local outside = connkit.store.redis { url = r.url, key = KEY }
    local id1, id2 = fresh_id("in"), fresh_id("out")
    local secret1 = "tok-" .. core.hex(core.random(6))
    local secret2 = "tok-" .. core.hex(core.random(6))
    assert.is_true(p:run("redis_store", { op = "put", conf = conf_file(r.url, KEY), id = id1, token = secret1 }).ok)
    assert.are.equal(secret1, assert(outside.get(id1)).access_token)
    assert.is_true(outside.put(id2, { access_token = secret2 }))
    local got = p:run("redis_store", { op = "get", conf = conf_file(r.url, KEY), id = id2 })
    assert.is_true(got.ok, got.message)
    assert.are.equal(secret2, got.access_token)
    -- the version grew once per write from either side: one layout
    assert.are.equal("1", r.cli("HGET", "connkit:{" .. id1 .. "}:record", "v"):match("%d+"))
    assert.is_true(outside.put(id1, { access_token = secret2 }))
    got = p:run("redis_store", { op = "get", conf = conf_file(r.url, KEY), id = id1 })
    assert.are.equal(secret2, got.access_token)
    assert.are.equal("2", r.cli("HGET", "connkit:{" .. id1 .. "}:record", "v"):match("%d+"))
    -- another key does not open it inside nginx either
    local other = core.b64encode(core.random(32))
    got = p:run("redis_store", { op = "get", conf = conf_file(r.url, other), id = id1 })
    assert.is_false(got.ok)
    assert.are.equal("store_auth", got.code)
  end)

  it("40 concurrent requests on 4 workers on one Redis account cause one token request", function()
    local args = { base = sp.url, conf = conf_file(r.url, KEY), name = fresh_id("cc"), run = fresh_id("run"), ttl = 3600 }
    fleet_calls(p, 40, args)
    assert.are.equal(1, token_requests(args.run))
    local set, calls = bearers()
    assert.are.equal(40, calls)
    assert.are.equal(1, #keys_of(set), "every call used the one token")
    local served, total = p:run("redis_store", { op = "served", name = args.name }), 0
    for _, n in pairs(served) do total = total + n end
    assert.are.equal(40, total)
    assert.is_true(#keys_of(served) >= 2, "the calls were not spread over the workers")
  end)

  it("a mixed fleet (this process with hiredis, 4 nginx workers with resty) makes one token request per expiry", function()
    local args = { base = sp.url, conf = conf_file(r.url, KEY), name = fresh_id("mix"), run = fresh_id("run"), ttl = 4 }
    local plain = plain_account(args)
    -- 1. the plain process fetches the first token; the workers use it
    assert.are.equal(200, assert(plain:get("/resource")).status)
    assert.are.equal(1, token_requests(args.run))
    fleet_calls(p, 16, args)
    assert.are.equal(1, token_requests(args.run))
    local set = bearers()
    assert.are.equal(1, #keys_of(set), "the workers used the plain process's token")
    assert.are.equal(17, set[keys_of(set)[1]])
    -- 2. due (half its 4 s spent): the workers renew it once, the plain
    -- process then uses theirs
    socket.sleep(2.3)
    sp.reset()
    fleet_calls(p, 16, args)
    assert.are.equal(1, token_requests(args.run))
    assert.are.equal(200, assert(plain:get("/resource")).status)
    assert.are.equal(1, token_requests(args.run))
    set = bearers()
    assert.are.equal(1, #keys_of(set), "one renewed token for the whole fleet")
    assert.are.equal(17, set[keys_of(set)[1]])
    -- 3. due again: this time the plain process renews, the workers follow
    socket.sleep(2.3)
    sp.reset()
    assert.are.equal(200, assert(plain:get("/resource")).status)
    assert.are.equal(1, token_requests(args.run))
    fleet_calls(p, 16, args)
    assert.are.equal(1, token_requests(args.run))
    set = bearers()
    assert.are.equal(1, #keys_of(set))
    assert.are.equal(17, set[keys_of(set)[1]])
  end)

  it("keeps databases apart: SELECT on a new connection, pooled per database", function()
    local id = fresh_id("db")
    local url1 = r.url:gsub("/0$", "/1")
    for _ = 1, 4 do -- every worker, each with both pools
      local put = p:run("redis_store", { op = "put", conf = conf_file(url1, KEY), id = id, token = "in-db1" })
      assert.is_true(put.ok, put.message)
      local got = p:run("redis_store", { op = "get", conf = conf_file(r.url, KEY), id = id })
      assert.is_nil(got.code, got.message)
      assert.is_nil(got.access_token, "db 0 saw the record written on db 1")
    end
    local outside = connkit.store.redis { url = url1, key = KEY }
    assert.are.equal("in-db1", assert(outside.get(id)).access_token)
    assert.is_nil(connkit.store.redis({ url = r.url, key = KEY }).get(id))
    assert.matches("%d", r.cli("-n", "1", "HGET", "connkit:{" .. id .. "}:record", "v"))
  end)

  it("a wrong password: code store naming the address and AUTH, the password nowhere", function()
    local wrong = "wrong-" .. core.hex(core.random(6))
    local url = ("redis://:%s@127.0.0.1:%d/0"):format(wrong, r.port)
    local got = p:run("redis_store", { op = "get", conf = conf_file(url, KEY), id = "x" })
    assert.is_false(got.ok)
    assert.are.equal("store", got.code)
    assert.matches("127.0.0.1:" .. r.port, got.message, 1, true)
    assert.matches("(AUTH)", got.message, 1, true)
    assert.is_nil(got.message:find(wrong, 1, true))
    assert.is_nil(p:error_log():find(wrong, 1, true))
  end)
end)

describe("connkit.store.redis inside nginx does not block the worker", function()
  local p, rp -- one worker: /ping must be served by the worker that waits

  lazy_setup(function()
    rp = helpers.peer("redis").new { password = "pw-" .. core.hex(core.random(6)) }
    -- a store made in init_by_lua (before the fork) and written there with
    -- hiredis; requests then use it through resty.redis
    p = openresty.start(helpers, { workers = 1, init = ([[
      local f = assert(io.open(%q, "rb"))
      local url, key = f:read("*l", "*l")
      f:close()
      local s = require("connkit").store.redis { url = url, key = key }
      assert(s.put("from-init", { access_token = "init-tok" }))
      package.loaded["spec.redis_init_store"] = { store = s,
        hiredis = package.loaded["connkit.store.redis_hiredis"] ~= nil,
        resty = package.loaded["connkit.store.redis_resty"] ~= nil }
    ]]):format(conf_file(rp.url, KEY)) })
  end)
  lazy_teardown(function()
    if p then p.stop() end
    if rp then rp.stop() end
  end)

  -- Runs a scenario in the background (curl); wait() -> its decoded result.
  local function background(name, args)
    local out = helpers.tmpdir("ngx-redis") .. "/body.json"
    local proc = helpers.spawn("ngx-redis-call", ("curl -s --max-time 30 -o %s %s"):format(
      helpers.shell_quote(out), helpers.shell_quote(p.url .. "/run/" .. name .. openresty.query(args))))
    return {
      wait = function()
        local deadline = socket.gettime() + 30
        while openresty.running(proc.pid) and socket.gettime() < deadline do socket.sleep(0.01) end
        local body = helpers.read_file(out) or ""
        local ok, decoded = pcall(require("cjson").decode, body)
        assert(ok and type(decoded) == "table", "no result from " .. name .. ": " .. body .. "\n" .. p:log_tail(20))
        return decoded
      end,
    }
  end

  -- The total time of `n` pings, one after another.
  local function pings(n)
    local total = 0
    for _ = 1, n do
      local status, body, took = p:get("/ping")
      assert.are.equal(200, status)
      assert.matches("pong", body)
      total = total + took
    end
    return total
  end

  it("a store made in init_by_lua writes there with hiredis and serves requests with resty.redis", function()
    local got = p:run("redis_store", { op = "init" })
    assert.is_true(got.init_hiredis, "init_by_lua did not use hiredis")
    assert.is_false(got.init_resty, "init_by_lua loaded the resty client")
    assert.are.equal("init-tok", got.access_token)
    assert.is_true(got.ok, got.message)
    assert.is_true(got.resty, "the request did not use the resty client")
    -- the request's write reached Redis: read outside nginx
    local outside = connkit.store.redis { url = rp.url, key = KEY }
    assert.are.equal("from-request", assert(outside.get("from-init")).access_token)
  end)

  it("Redis paused (SIGSTOP): code store within the timeout, and /ping still answers meanwhile", function()
    local id = fresh_id()
    assert.is_true(p:run("redis_store", { op = "put", conf = conf_file(rp.url, KEY), id = id, token = "t" }).ok)
    rp.pause()
    finally(function() rp.resume() end)
    local call = background("redis_store", { op = "get", conf = conf_file(rp.url, KEY), id = id, timeout = 1.5 })
    socket.sleep(0.3)
    -- the worker is waiting on Redis: it still answers at once
    local ping_time = pings(3)
    assert.is_true(ping_time < 0.6, ("3 pings took %.2f s while Redis was paused"):format(ping_time))
    local got = call.wait()
    rp.resume()
    assert.is_false(got.ok)
    assert.are.equal("store", got.code)
    assert.matches("127.0.0.1:" .. rp.port .. ": no reply within the timeout", got.message, 1, true)
    assert.is_nil(got.message:find(rp.password, 1, true))
    assert.is_true(got.took >= 1.4 and got.took < 2.5, ("took %.2f s"):format(got.took))
    -- Redis is back: the worker's store works again (the timed-out
    -- connection was closed, not pooled)
    got = p:run("redis_store", { op = "get", conf = conf_file(rp.url, KEY), id = id })
    assert.is_true(got.ok, got.message)
    assert.are.equal("t", got.access_token)
  end)

  it("a lock wait yields: /ping answers while a request waits for a lock this process holds", function()
    local outside = connkit.store.redis { url = rp.url, key = KEY, lock_ttl = 10 }
    local id = fresh_id("lk")
    local unlock = assert(outside.lock(id))
    local call = background("redis_store", { op = "lock", conf = conf_file(rp.url, KEY), id = id, wait = 2 })
    socket.sleep(0.4) -- the waiter is past its first tries: backing off
    local ping_time = pings(10)
    assert.is_true(ping_time < 0.4, ("10 pings took %.2f s while a request waited for the lock"):format(ping_time))
    local got = call.wait()
    assert.is_false(got.ok)
    assert.are.equal("lock_timeout", got.code)
    assert.is_true(got.took >= 1.9, ("gave up after %.2f s"):format(got.took))
    -- still held by this process (the waiter took nothing), then released
    assert.matches("^%x+", rp.cli("GET", "connkit:{" .. id .. "}:lock"))
    unlock()
    got = p:run("redis_store", { op = "lock", conf = conf_file(rp.url, KEY), id = id, wait = 1 })
    assert.is_true(got.ok, got.message)
  end)
end)
