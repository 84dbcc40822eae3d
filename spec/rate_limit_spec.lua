-- Rate limits (issue 13 point 3): the server-driven pause (remaining 0 ->
-- wait until reset, per reset_is), max_wait and the request's deadline
-- (rate_limited + retry_at, nothing sent), the client-side bucket
-- (per_second, burst) per scope, connkit.all and handles, Retry-After
-- through retry beside it, per-request overrides, field checks. Against the
-- scripted peer (spec/scripted/routes/ratelimit.js), which records the time
-- each request arrived: the timing assertions are lower bounds (what the
-- peer must not have seen earlier), with slack for a loaded machine.
local helpers = require "helpers"
local connkit = require "connkit"
local core = require "connkit.core"
local rate_limit = require "connkit.http.rate_limit"

local SLACK = 0.05 -- clocks: the client's sleep vs the peer's arrival stamp

describe("rate limits", function()
  local sp
  local n = 0
  local function key() n = n + 1 return ("rl%d-%d"):format(n, os.time()) end

  -- an integration (unique key) with the rule; `accounts` accounts of it
  local function integration(rule, extra)
    n = n + 1
    local def = { name = "Rate " .. n, key = "rate" .. n, auth = "none", base_url = "{base}",
      parameters = { "base" }, rate_limit = rule }
    for k, v in pairs(extra or {}) do def[k] = v end
    return connkit.integration(def)
  end
  local function account(integ, id) return integ:account { id = id, parameters = { base = sp.url } } end

  -- the peer's arrival times for the window key k (or every /rl/ok request
  -- with query tag t), oldest first
  local function times(path, field, value)
    local out = {}
    for _, r in ipairs(sp.requests(path)) do
      if r.query[field] == value then out[#out + 1] = r.time end
    end
    return out
  end

  setup(function() sp = helpers.peer("scripted") end)
  before_each(function() rate_limit.reset() end)

  describe("the server's pause", function()
    for _, is in ipairs({ "seconds", "epoch", "http-date" }) do
      it("waits until the reset (" .. is .. ") before the next request", function()
        local k = key()
        local acct = account(integration { reset_is = is, max_wait = 10 })
        local q = { key = k, limit = 2, window = 2, is = is }
        assert.equal(200, assert(acct:get("/rl/window", { query = q })).status)
        local second = assert(acct:get("/rl/window", { query = q }))
        assert.equal("0", second.headers["x-ratelimit-remaining"])
        local third = assert(acct:get("/rl/window", { query = q }))
        assert.equal(200, third.status) -- a new window, not a 429
        assert.equal(1, third:json().n)
        assert.equal(0, sp.attempts("rl-over:" .. k))
        local t = times("/rl/window", "key", k)
        assert.equal(3, #t)
        -- the window opened with the first request and lasts 2 s
        assert.is_true(t[3] >= t[1] + 2 - SLACK, ("third request %.3f s after the first"):format(t[3] - t[1]))
      end)
    end

    it("fails at once, unsent, beyond max_wait: rate_limited with retry_at", function()
      local k = key()
      local acct = account(integration { max_wait = 1 })
      local q = { key = k, limit = 1, window = 20 }
      assert.equal(200, assert(acct:get("/rl/window", { query = q })).status)
      local t0 = core.now()
      local res, err = acct:get("/rl/window", { query = q })
      assert.is_nil(res)
      assert.equal("rate_limited", err.code)
      assert.is_true(core.now() - t0 < 0.5) -- no wait
      assert.is_true(err.retry_at > t0 + 15 and err.retry_at < t0 + 22, tostring(err.retry_at - t0))
      assert.matches("max_wait", err.message, 1, true)
      assert.equal(1, #times("/rl/window", "key", k)) -- the peer got nothing more
    end)

    it("fails at once when the wait would end after the request's timeout", function()
      local k = key()
      local acct = account(integration { max_wait = 60 })
      local q = { key = k, limit = 1, window = 5 }
      assert(acct:get("/rl/window", { query = q }))
      local res, err = acct:get("/rl/window", { query = q, timeout = 1 })
      assert.is_nil(res)
      assert.equal("rate_limited", err.code)
      assert.matches("timeout", err.message, 1, true)
      assert.equal(1, #times("/rl/window", "key", k))
    end)

    it("holds back handles too, without blocking start()", function()
      local k = key()
      local acct = account(integration { max_wait = 10 })
      local q = { key = k, limit = 1, window = 2 }
      assert(acct:get("/rl/window", { query = q }))
      local t0 = core.now()
      local h = acct:prepare { url = "/rl/window", query = q }:start()
      assert.is_true(core.now() - t0 < 0.5)
      assert.is_false(h:done())
      while not h:done() do connkit.poll(0.05) end
      local res = assert(h:result())
      assert.equal(200, res.status)
      local t = times("/rl/window", "key", k)
      assert.is_true(t[2] >= t[1] + 2 - SLACK)
      assert.equal(0, sp.attempts("rl-over:" .. k))
    end)

    it("is bypassed by rate_limit = false, shortened by a request's max_wait", function()
      local k = key()
      local acct = account(integration { max_wait = 10 })
      local q = { key = k, limit = 1, window = 5 }
      assert(acct:get("/rl/window", { query = q }))
      local _, err = acct:get("/rl/window", { query = q, rate_limit = { max_wait = 0 } })
      assert.equal("rate_limited", err.code)
      assert.equal(1, #times("/rl/window", "key", k))
      local t0 = core.now()
      local res = assert(acct:get("/rl/window", { query = q, rate_limit = false }))
      assert.equal(429, res.status) -- sent at once: the server says no
      assert.is_true(core.now() - t0 < 1)
      assert.equal(1, sp.attempts("rl-over:" .. k))
    end)

    it("pauses every account of scope integration, one account of scope account", function()
      for _, scope in ipairs({ "integration", "account" }) do
        local k = key()
        local integ = integration { max_wait = 1, scope = scope }
        local a, b = account(integ, "a"), account(integ, "b")
        local q = { key = k, limit = 1, window = 20 }
        assert(a:get("/rl/window", { query = q }))
        local _, aerr = a:get("/rl/ok", { query = { tag = k } })
        assert.equal("rate_limited", aerr.code)
        local res, berr = b:get("/rl/ok", { query = { tag = k } })
        if scope == "integration" then
          assert.equal("rate_limited", berr.code)
          assert.equal(0, #times("/rl/ok", "tag", k))
        else
          assert.equal(200, res.status)
          assert.equal(1, #times("/rl/ok", "tag", k))
        end
      end
    end)
  end)

  describe("the client's bucket", function()
    it("spaces requests by per_second after a burst", function()
      local tag = key()
      local acct = account(integration { per_second = 5, burst = 2 })
      for _ = 1, 6 do assert.equal(200, assert(acct:get("/rl/ok", { query = { tag = tag } })).status) end
      local t = times("/rl/ok", "tag", tag)
      assert.equal(6, #t)
      for i = 3, 6 do
        assert.is_true(t[i] - t[1] >= (i - 2) * 0.2 - SLACK, ("request %d at +%.3f s"):format(i, t[i] - t[1]))
      end
    end)

    it("is shared by the accounts of scope integration", function()
      local tag = key()
      local integ = integration { per_second = 4, burst = 1, scope = "integration" }
      local a, b = account(integ, "a"), account(integ, "b")
      for i = 1, 4 do assert((i % 2 == 1 and a or b):get("/rl/ok", { query = { tag = tag } })) end
      local t = times("/rl/ok", "tag", tag)
      assert.is_true(t[4] - t[1] >= 3 * 0.25 - SLACK, ("%.3f s"):format(t[4] - t[1]))
    end)

    it("is one per account with scope account", function()
      local integ = integration { per_second = 2, burst = 1, scope = "account" }
      local a, b = account(integ, "a"), account(integ, "b")
      local ta, tb = key(), key()
      for _ = 1, 2 do
        assert(a:get("/rl/ok", { query = { tag = ta } }))
        assert(b:get("/rl/ok", { query = { tag = tb } }))
      end
      local xa, xb = times("/rl/ok", "tag", ta), times("/rl/ok", "tag", tb)
      assert.is_true(xa[2] - xa[1] >= 0.5 - SLACK)
      assert.is_true(xb[2] - xb[1] >= 0.5 - SLACK)
      -- b's first request did not wait for a's bucket (a shared one would
      -- have made the four take 1.5 s)
      assert.is_true(xb[2] - xa[1] < 1.3, ("%.3f s"):format(xb[2] - xa[1]))
    end)

    it("spaces connkit.all's requests too", function()
      local tag = key()
      local acct = account(integration { per_second = 5, burst = 1 })
      local reqs = {}
      for i = 1, 5 do reqs[i] = acct:prepare { url = "/rl/ok", query = { tag = tag } } end
      local results = connkit.all(reqs, { concurrency = 5 })
      for i = 1, 5 do assert.equal(200, results[i].res.status) end
      local t = times("/rl/ok", "tag", tag)
      table.sort(t)
      for i = 2, 5 do
        assert.is_true(t[i] - t[1] >= (i - 1) * 0.2 - SLACK, ("request %d at +%.3f s"):format(i, t[i] - t[1]))
      end
    end)

    it("fails at once when its slot is beyond max_wait", function()
      local tag = key()
      local acct = account(integration { per_second = 1, burst = 1, max_wait = 0.5 })
      assert(acct:get("/rl/ok", { query = { tag = tag } }))
      local res, err = acct:get("/rl/ok", { query = { tag = tag } })
      assert.is_nil(res)
      assert.equal("rate_limited", err.code)
      assert.is_true(err.retry_at > core.now() + 0.4)
      assert.equal(1, #times("/rl/ok", "tag", tag))
    end)

    it("takes its slot from the store's rate_take when it has one", function()
      local tag, calls = key(), {}
      local store = connkit.store.memory()
      local shared = {}
      store.rate_take = function(k, per_second, burst, at, limit)
        calls[#calls + 1] = { key = k, per_second = per_second, burst = burst, limit = limit }
        shared[k] = (shared[k] or 0) + 1
        return shared[k] == 1 and 0 or 0.3
      end
      local integ = integration({ per_second = 10, burst = 3 }, { auth = "api_token" })
      local acct = integ:account { id = "s", parameters = { base = sp.url }, credentials = { token = "rl-tok-123" },
        store = store }
      assert(acct:get("/rl/ok", { query = { tag = tag } }))
      assert(acct:get("/rl/ok", { query = { tag = tag } }))
      assert.equal(2, #calls)
      assert.same({ key = "ratelimit:" .. integ.key .. ":s", per_second = 10, burst = 3, limit = 30 },
        { key = calls[1].key, per_second = calls[1].per_second, burst = calls[1].burst, limit = calls[1].limit })
      local t = times("/rl/ok", "tag", tag)
      assert.is_true(t[2] - t[1] >= 0.3 - SLACK)
      -- a store that fails: the request fails with its error, unsent
      store.rate_take = function() return nil, require("connkit.errors").new("store", "the bucket is down") end
      local res, err = acct:get("/rl/ok", { query = { tag = tag } })
      assert.is_nil(res)
      assert.equal("store", err.code)
      assert.equal(2, #times("/rl/ok", "tag", tag))
      store.rate_take = function() return "soon" end
      local ok, raised = pcall(acct.get, acct, "/rl/ok", { query = { tag = tag } })
      assert.is_false(ok)
      assert.matches("store.rate_take must return seconds", raised, 1, true)
      assert.equal(2, #times("/rl/ok", "tag", tag))
    end)
  end)

  describe("with the Redis store", function()
    local r
    setup(function() r = helpers.peer("redis") end)

    it("shares one bucket across processes", function()
      local prefix = "rl" .. os.time() .. n .. ":"
      local tag = key()
      local code = ([[
        local connkit = require "connkit"
        local integ = connkit.integration { name = "Shared", key = "sharedrate", auth = "none",
          base_url = %q, rate_limit = { per_second = 4, burst = 1, scope = "integration" } }
        local acct = integ:account { store = connkit.store.redis { url = %q, plaintext = true, prefix = %q } }
        for _ = 1, 5 do assert(acct:get("/rl/ok", { query = { tag = %q } })) end
      ]]):format(sp.url, r.url, prefix, tag)
      local script = helpers.tmpdir("ratelimit") .. "/child.lua"
      helpers.write_file(script, code)
      local child = helpers.spawn("ratelimit-child", helpers.lua .. " " .. helpers.shell_quote(script),
        { env = helpers.child_env() })
      assert(loadstring or load)(code)() -- this process: the same five requests
      for _ = 1, 200 do
        if not helpers.alive(child.pid) then break end
        require("socket").sleep(0.05)
      end
      local t = times("/rl/ok", "tag", tag)
      assert.equal(10, #t, helpers.read_file(child.log))
      table.sort(t)
      for i = 2, 10 do
        assert.is_true(t[i] - t[1] >= (i - 1) * 0.25 - SLACK, ("request %d at +%.3f s"):format(i, t[i] - t[1]))
      end
    end)

    it("rate_take reserves slots and refuses beyond the limit", function()
      local store = connkit.store.redis { url = r.url, plaintext = true, prefix = "rlt" .. os.time() .. n .. ":" }
      local at = core.now()
      assert.equal(0, assert(store.rate_take("k", 2, 2, at, 10)))
      assert.equal(0, assert(store.rate_take("k", 2, 2, at, 10)))
      local w = assert(store.rate_take("k", 2, 2, at, 10))
      assert.is_true(w > 0.4 and w <= 0.5, tostring(w))
      local beyond = assert(store:rate_take("k", 2, 2, at, 0.1)) -- too far: not reserved
      assert.is_true(beyond > 0.9)
      w = assert(store.rate_take("k", 2, 2, at, 10))
      assert.is_true(w > 0.9 and w <= 1.0, tostring(w))
      store.close()
    end)
  end)

  describe("inside nginx (the ngx transport)", function()
    local openresty = require "peers.openresty"
    local p
    lazy_setup(function()
      if openresty.available() then p = openresty.start(helpers, { workers = 1 }) end
    end)
    lazy_teardown(function() if p then p.stop() end end)

    for _, mode in ipairs({ "bucket", "all", "pause" }) do
      it("waits with ngx.sleep, the worker serving meanwhile (" .. mode .. ")", function()
        if not p then return pending("no OpenResty here") end
        local tag = key()
        local batch = p:parallel({ "/run/ratelimit" .. openresty.query({ base = sp.url, tag = tag, mode = mode }) }, 20)
        require("socket").sleep(0.4) -- inside a wait
        local status, body, ping = p:get("/ping")
        local results = batch.wait()
        assert.equal(200, results[1].status, p:log_tail())
        assert.equal(200, status)
        assert.equal("pong\n", body)
        assert.is_true(ping < 0.1, ("/ping took %.0f ms"):format(ping * 1000))
        if mode == "pause" then
          local t = times("/rl/window", "key", tag)
          assert.equal(2, #t)
          assert.is_true(t[2] >= t[1] + 2 - SLACK, ("%.3f s"):format(t[2] - t[1]))
          assert.equal(0, sp.attempts("rl-over:" .. tag))
        else
          local t = times("/rl/ok", "tag", tag)
          assert.equal(4, #t)
          table.sort(t)
          for i = 2, 4 do
            assert.is_true(t[i] - t[1] >= (i - 1) * 0.25 - SLACK, ("request %d at +%.3f s"):format(i, t[i] - t[1]))
          end
        end
      end)
    end
  end)

  it("lets Retry-After work through retry beside it", function()
    local k = key()
    local acct = account(integration({ per_second = 20, burst = 2 }, { retry = { max = 2, base = 0.01 } }))
    local res = assert(acct:get("/ratelimit", { query = { key = k, fail = 1, retry_after = 1 } }))
    assert.equal(200, res.status)
    assert.equal(2, res.attempts)
    assert.equal(2, sp.attempts(k))
    local t = times("/ratelimit", "key", k)
    assert.is_true(t[2] - t[1] >= 1 - SLACK)
  end)

  describe("fields", function()
    local function raises(rule, pattern)
      local ok, err = pcall(integration, rule)
      assert.is_false(ok)
      assert.matches(pattern, err, 1, true)
    end

    it("bad values give errors naming the field", function()
      raises({ reset_is = "minutes" }, 'rate_limit.reset_is must be one of "seconds", "epoch", "http-date"')
      raises({ per_second = -1 }, "rate_limit.per_second must be at least")
      raises({ per_second = "5" }, "rate_limit.per_second must be a number")
      raises({ per_second = 5, burst = 1.5 }, "rate_limit.burst must be a whole number")
      raises({ burst = 3 }, "rate_limit.burst needs rate_limit.per_second")
      raises({ scope = "global" }, 'rate_limit.scope must be "account" or "integration"')
      raises({ max_wait = -1 }, "rate_limit.max_wait must be at least 0")
      raises({ remaining = "bad header" }, "rate_limit.remaining must be a header name")
      raises({ per_seconds = 5 }, "rate_limit.per_seconds is not a known field of rate_limit (did you mean 'per_second'?)")
      raises("fast", "rate_limit must be a table")
    end)

    it("a request may not change the shared bucket", function()
      local acct = account(integration { per_second = 5 })
      local ok, err = pcall(acct.get, acct, "/rl/ok", { rate_limit = { per_second = 50 } })
      assert.is_false(ok)
      assert.matches("rate_limit.per_second can only be set in the integration's rate_limit", err, 1, true)
      ok, err = pcall(acct.get, acct, "/rl/ok", { rate_limit = "off" })
      assert.is_false(ok)
      assert.matches("option 'rate_limit' must be a table of rate_limit fields or false", err, 1, true)
    end)
  end)

  it("examples/rate_limit.lua runs", function()
    local ok, out = helpers.run_example("rate_limit.lua", { sp.url })
    assert.is_true(ok, out)
    assert.matches("rate_limited", out, 1, true)
    assert.matches("done", out, 1, true)
  end)
end)
