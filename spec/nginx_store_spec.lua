-- connkit.store.shared inside a real nginx (issue 11 points 3 and 4):
-- several workers share one token through a lua_shared_dict, with one token
-- request for many concurrent callers (counted by the scripted peer, which
-- issues the tokens and checks them on /resource); records are encrypted;
-- a worker killed while it holds the lock blocks the others only until the
-- lock expires; a full dict keeps the record in use; and callers in one
-- worker wait for a token fetch that yields instead of failing. Scenarios:
-- spec/nginx/store_*.lua.
local helpers = require "helpers"
local openresty = require "peers.openresty"
local socket = require "socket"

local KEY = "q2dy0tCPwYvJ4c1mB9dV8Qx1m6hQyYmZt3p9vQ0m2ZA=" -- a test key, 32 bytes

local sp -- the scripted peer (token endpoint and /resource)

-- Token requests the scripted peer received for the run tag `run`.
local function token_requests(run)
  local n = 0
  for _, r in ipairs(sp.requests("/token/ok")) do
    if r.query.run == run then n = n + 1 end
  end
  return n
end

-- The bearer tokens /resource received, as a set, and how many calls.
local function bearers()
  local set, calls = {}, 0
  for _, r in ipairs(sp.requests("/resource")) do
    local tok = (r.headers.authorization or ""):match("^Bearer (.+)$")
    if tok then set[tok] = true end
    calls = calls + 1
  end
  return set, calls
end

local function count(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

-- n concurrent GETs of the store_call scenario with `args`: results in
-- call order ({ status =, url = }) and the wall time.
local function parallel_calls(p, n, args)
  return p:run_all("store_call", n, args)
end

local function assert_all_ok(p, results)
  for i, r in ipairs(results) do
    assert.are.equal(200, r.status, ("call %d of %d failed (%s)\n%s"):format(i, #results, r.url, p:log_tail(30)))
  end
end

describe("connkit.store.shared across 4 nginx workers", function()
  local p

  lazy_setup(function()
    sp = helpers.peer("scripted")
    p = openresty.start(helpers, { workers = 4, shared_dicts = { tokens = "1m", small = "64k" } })
  end)
  lazy_teardown(function()
    if p then p.stop() end
  end)
  before_each(function() sp.reset() end)

  it("40 concurrent requests on 4 workers cause one token request, and every call uses that token", function()
    local results = parallel_calls(p, 40, { base = sp.url, name = "forty", key = KEY })
    assert_all_ok(p, results)
    assert.are.equal(1, token_requests("forty"))
    local set, calls = bearers()
    assert.are.equal(40, calls)
    assert.are.equal(1, count(set)) -- one token, used by every worker's account
    local served, total = p:run("store_served", { name = "forty" }), 0
    for _, calls in pairs(served) do total = total + calls end
    assert.are.equal(40, total)
    assert.is_true(count(served) >= 2, "the calls were not spread over the workers")
  end)

  it("shares a rate limit's bucket: requests from every worker are spaced by per_second", function()
    local tag = "rate-" .. os.time()
    local t0 = socket.gettime()
    local results = p:run_all("store_rate", 8, { base = sp.url, tag = tag })
    for i, r in ipairs(results) do
      assert.are.equal(200, r.status, ("call %d failed (%s)\n%s"):format(i, r.url, p:log_tail(30)))
    end
    assert.is_true(count(p:run("store_served", { name = tag })) >= 2, "the calls were not spread over the workers")
    local t = {}
    for _, r in ipairs(sp.requests("/rl/ok")) do
      if r.query.tag == tag then t[#t + 1] = r.time end
    end
    assert.are.equal(8, #t)
    table.sort(t)
    -- one bucket of 5 per second, burst 1: the i-th arrival is no earlier
    -- than (i - 1) * 0.2 s after the start (less slack for the clocks); a
    -- bucket per worker would let one request of each worker in at once
    for i = 2, #t do
      assert.is_true(t[i] - t0 >= (i - 1) * 0.2 - 0.05, ("request %d came %.3f s after the start"):format(i, t[i] - t0))
    end
  end)

  it("rate_take reserves slots one interval apart and nothing beyond the limit", function()
    local r = p:run("store_rate_take", { tag = tostring(os.time()) })
    assert.are.same({ 0, 0.5, 1, 1 }, r.waits)
    assert.matches("rate_take", r.raised)
  end)

  it("keeps the record encrypted: the token is nowhere in the dict in clear; another key or no key cannot read it", function()
    p:run("store_call", { base = sp.url, name = "sealed", key = KEY })
    local token = next((bearers()))
    assert.is_string(token)
    local raw = p:run("store_raw", { id = "sealed", needle = token, key = KEY })
    assert.are.equal(1, raw.records)
    assert.are.equal(0, raw.locks) -- released
    assert.is_false(raw.needle_seen)
    assert.is_true(raw.with_key_matches) -- the store with the key reads the token the peer saw
    assert.is_false(raw.without_key.record)
    assert.are.equal("store_auth", raw.without_key.code)
    assert.are.equal("store_auth", raw.other_key_code)
  end)

  it("a worker killed (kill -9) while it holds the lock blocks the others only until the lock expires", function()
    local held = p:run("store_lock", { id = "killed", lock_ttl = 3 })
    local t_lock = socket.gettime()
    assert.is_true(held.ttl > 2 and held.ttl <= 3)
    local master = tonumber(helpers.read_file(p.dir .. "/nginx.pid"))
    assert.are_not.equal(master, held.pid)
    assert.is_true(helpers.run("kill -9 " .. math.floor(held.pid)))
    local results = parallel_calls(p, 8, { base = sp.url, name = "killed", key = KEY, lock_timeout = 10 })
    local waited = socket.gettime() - t_lock
    assert_all_ok(p, results)
    -- they got the lock when it expired (3 s after it was taken), not at
    -- their lock_timeout (10 s)
    assert.is_true(waited >= 2.5, ("waited %.2f s"):format(waited))
    assert.is_true(waited < 7, ("waited %.2f s"):format(waited))
    assert.are.equal(1, token_requests("killed"))
    assert.matches("exited on signal 9", p:error_log(), 1, true)
  end)

  it("raises for bad arguments and options, naming them (and never showing the key)", function()
    local r = p:run("store_options")
    assert.matches('no shared dict named "no_such_dict".*lua_shared_dict no_such_dict', r.missing_dict)
    assert.matches("argument 'dict_name' must be the name of a lua_shared_dict, got number", r.dict_name_type, 1, true)
    assert.matches("lock_timeot", r.unknown_option, 1, true)
    assert.matches("option 'key' is not valid base64", r.bad_key, 1, true)
    assert.is_nil(r.bad_key:find("not base64!", 1, true))
    assert.matches("option 'key' must decode to 32 bytes (got 5)", r.short_key, 1, true)
    assert.matches("option 'key' must be a base64 string of 32 bytes, got number", r.key_type, 1, true)
    assert.matches("lock_ttl", r.bad_lock_ttl, 1, true)
    assert.matches("lock_timeout", r.bad_lock_timeout, 1, true)
    assert.matches("give either option 'key' or option 'key_file'", r.both_keys, 1, true)
    assert.are.equal("ok", r.fine)
    assert.are.equal("connkit.store.shared(tokens)", r.tostring)
    -- raised at the caller's line (the scenario), not inside connkit
    assert.matches("store_options.lua:%d+:", r.missing_dict)
  end)

  it("a full dict keeps the record in use: the write fails with code 'store', the record before it is read back", function()
    local r = p:run("store_full", { dict = "small", key = KEY })
    assert.is_true(r.put1)
    assert.is_true(r.put2)
    assert.is_true(r.fillers > 0)
    assert.is_false(r.put3.ok)
    assert.are.equal("store", r.put3.code)
    assert.matches("no memory", r.put3.message, 1, true)
    assert.are.equal("second", r.after)
    -- nor is anything evicted to make room for a lock
    assert.is_false(r.lock.ok)
    assert.are.equal("store", r.lock.code)
  end)
end)

describe("callers in one nginx worker while a token fetch yields", function()
  local p

  lazy_setup(function()
    sp = helpers.peer("scripted")
    p = openresty.start(helpers, { workers = 1, shared_dicts = { tokens = "1m" } })
  end)
  lazy_teardown(function()
    if p then p.stop() end
  end)
  before_each(function() sp.reset() end)

  it("ten concurrent requests wait for the one fetch (no 'refresh already under way') and all succeed", function()
    -- the store sleeps 0.5 s once it holds the lock: the renewal task is
    -- suspended inside nginx while the other nine requests need the token
    local results, wall = parallel_calls(p, 10, { base = sp.url, name = "yield", key = KEY, lock_sleep = 0.5 })
    assert_all_ok(p, results)
    assert.are.equal(1, token_requests("yield"))
    local set, calls = bearers()
    assert.are.equal(10, calls)
    assert.are.equal(1, count(set))
    assert.is_true(wall < 5, ("took %.2f s"):format(wall))
    assert.is_nil(p:error_log():find("already under way", 1, true))
  end)

  it("keeps callers inside the renewal re-entrant: a store callback gets 'refresh' at once, on_token gets through", function()
    local r = p:run("store_reenter", { base = sp.url, name = "reenter" })
    assert.are.equal(200, r.main.status, r.main.message)
    assert.is_nil(r.put.status)
    assert.are.equal("refresh", r.put.code)
    assert.matches("already under way", r.put.message, 1, true)
    assert.is_true(r.put.took < 0.5) -- it did not wait for itself
    assert.are.equal(200, r.hook.status, r.hook.message)
    assert.are.equal(1, token_requests("reenter"))
    local froms = {}
    for _, q in ipairs(sp.requests("/resource")) do froms[#froms + 1] = q.query.from end
    table.sort(froms)
    assert.are.same({ "hook", "main" }, froms)
  end)

  it("a renewal suspended inside nginx for longer than tokens.STALLED is given up, not waited for for ever", function()
    local args = { base = sp.url, name = "abandon", key = KEY, lock_sleep = 30, lock_ttl = 2 }
    -- a request whose renewal sleeps 30 s in the store's lock
    local stuck = helpers.spawn("stuck-call", "curl -s -o /dev/null --max-time 40 "
      .. helpers.shell_quote(p.url .. "/run/store_call" .. openresty.query(args)))
    socket.sleep(0.3)
    local ok, r = pcall(p.run, p, "store_abandon", args)
    helpers.stop(stuck)
    assert(ok, r)
    assert.is_true(r.running)
    assert.is_nil(r.waiting.status) -- waited for the stuck one, for its own timeout
    assert.are.equal("timeout", r.waiting.code)
    assert.are.equal(200, r.later.status, r.later.message)
    assert.are.equal(1, token_requests("abandon")) -- the stuck one has not fetched yet
  end)
end)
