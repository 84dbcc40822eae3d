-- One deadline per request (issue 10, defects 4 and 5): a request's
-- `timeout` covers every step of it (redirect hops, the token fetch before
-- it, the wait for another process's refresh lock, retries) in blocking
-- send(), non-blocking handles and connkit.all; a retry that cannot start
-- before the deadline is not started; a timeout under a millisecond (a
-- deadline's last moments) still times out and is never "no timeout".
--
-- Bound: every call returns within its timeout plus SLACK (0.5 s). Peers:
-- the scripted server (slow redirect hops, a slow token endpoint, /flaky,
-- a listener that never answers) and the file store's lock held by a child
-- process. Assertions are also on what the peer received.
local helpers = require "helpers"
local connkit = require "connkit"
local core = require "connkit.core"
local request = require "connkit.http.request"
local deadlines = require "connkit.http.deadline"

local SLACK = 0.5

local sp -- the scripted peer
local n = 0
local function key() n = n + 1 return ("d%d-%d"):format(n, os.time()) end

local function static_account(extra)
  n = n + 1
  local def = { name = "Deadline " .. n, key = "deadline" .. n, auth = "none", base_url = "{base}",
    parameters = { "base" } }
  for k, v in pairs(extra or {}) do def[k] = v end
  return connkit.integration(def):account { parameters = { base = sp.url } }
end

-- A client-credentials account whose token comes from `token_path` on the
-- scripted peer; the account's own timeout stays the default (60 s).
local function cc_account(token_path, opts)
  n = n + 1
  local integ = connkit.integration {
    name = "Deadline token " .. n, key = "deadlinetok" .. n, auth = "oauth2",
    base_url = "{base}", parameters = { base = { required = true } },
    oauth2 = { grant_type = "client_credentials", token_url = "{base}" .. token_path,
      client_id = "deadline-client", client_secret = "deadline:s3cret" },
  }
  opts = opts or {}
  opts.parameters = { base = sp.url }
  return integ:account(opts)
end

-- Runs f, returns its results and the seconds it took (last).
local function timed(f)
  local t0 = core.now()
  local a, b = f()
  return a, b, core.now() - t0
end

local function within(took, limit)
  assert.is_true(took < limit + SLACK, ("took %.2f s; the bound is %.2f + %.1f s"):format(took, limit, SLACK))
end

local function hops_seen(k)
  local count = 0
  for _, r in ipairs(sp.requests("/redirect/slow")) do
    if r.query.key == k then count = count + 1 end
  end
  return count
end

describe("one deadline per request", function()
  setup(function() sp = helpers.peer("scripted") end)

  describe("redirect hops share the request's timeout", function()
    -- 4 hops of 0.8 s each: 3.2 s in all, more than the timeout of 2 s
    local function slow_chain(k) return ("/redirect/slow?n=4&s=0.8&key=%s"):format(k) end

    it("blocking send()", function()
      local k = key()
      local acct = static_account()
      local res, err, took = timed(function() return acct:get(slow_chain(k), { follow = true, timeout = 2 }) end)
      assert.is_nil(res)
      assert.equal("timeout", err.code)
      within(took, 2)
      assert.is_true(took > 1.5, ("took only %.2f s"):format(took))
      -- the peer saw the first hops only: no hop after the deadline
      assert.is_true(hops_seen(k) <= 3, "hops seen: " .. hops_seen(k))
    end)

    it("a non-blocking handle", function()
      local k = key()
      local acct = static_account()
      local req = assert(acct:prepare { url = slow_chain(k), follow = true, timeout = 2 })
      local res, err, took = timed(function() return req:start():result() end)
      assert.is_nil(res)
      assert.equal("timeout", err.code)
      within(took, 2)
      assert.is_true(hops_seen(k) <= 3, "hops seen: " .. hops_seen(k))
    end)

    it("connkit.all", function()
      local k1, k2 = key(), key()
      local acct = static_account()
      local reqs = {
        assert(acct:prepare { url = slow_chain(k1), follow = true, timeout = 2 }),
        assert(acct:prepare { url = slow_chain(k2), follow = true, timeout = 2 }),
      }
      local out, _, took = timed(function() return connkit.all(reqs) end)
      for i = 1, 2 do
        assert.is_nil(out[i].res)
        assert.equal("timeout", out[i].err.code)
      end
      -- (redirect hops are blocking transfers: two chains run one after
      -- the other at worst)
      within(took, 4)
      assert.is_true(hops_seen(k1) <= 3 and hops_seen(k2) <= 3)
    end)

    it("a chain that fits is followed to its end", function()
      local k = key()
      local res = assert(static_account():get(("/redirect/slow?n=2&s=0.2&key=%s"):format(k),
        { follow = true, timeout = 3 }))
      assert.equal(200, res.status)
      assert.equal(2, res.redirects)
      assert.equal(3, hops_seen(k))
    end)
  end)

  describe("the token fetch before a request", function()
    before_each(function() sp.reset() end)

    it("blocking send() stops waiting at its deadline; the shared token request goes on", function()
      local acct = cc_account("/token/slow?delay=3")
      local res, err, took = timed(function() return acct:get("/resource", { timeout = 1 }) end)
      assert.is_nil(res)
      assert.equal("timeout", err.code)
      assert.matches("token", err.message)
      within(took, 1)
      -- the token request was not given up: a later caller gets its token
      res = assert(acct:get("/resource", { timeout = 5 }))
      assert.equal(200, res.status)
      assert.equal(1, #sp.requests("/token/slow"))
      assert.equal(1, #sp.requests("/resource"))
    end)

    it("a non-blocking handle ends with timeout while it waits for the token", function()
      local acct = cc_account("/token/slow?delay=3")
      local req = assert(acct:prepare { url = "/resource", timeout = 1 })
      local h = req:start()
      local t0 = core.now()
      while not h:done() do connkit.poll(0.05) end
      local took = core.now() - t0
      local res, err = h:result()
      assert.is_nil(res)
      assert.equal("timeout", err.code)
      within(took, 1)
      -- and result() waits no longer than the deadline either
      local h2 = assert(acct:prepare { url = "/resource", timeout = 0.5 }):start()
      local res2, err2, took2 = timed(function() return h2:result() end)
      assert.is_nil(res2)
      assert.equal("timeout", err2.code)
      within(took2, 0.5)
      assert.equal(0, #sp.requests("/resource"))
    end)

    it("the refresh after a 401 is bounded too (send and a handle)", function()
      local acct = cc_account("/token/slow?delay=1.5")
      assert(acct:get("/resource", { timeout = 5 })) -- the first token
      sp.invalidate_all()                             -- /resource now answers 401
      local res, err, took = timed(function() return acct:get("/resource", { timeout = 0.6 }) end)
      assert.is_nil(res)
      assert.equal("timeout", err.code)
      assert.matches("renewed", err.message)
      within(took, 0.6)
      local h = assert(acct:prepare { url = "/resource", timeout = 0.6 }):start()
      res, err, took = timed(function() return h:result() end)
      assert.equal("timeout", err.code)
      within(took, 0.6)
      -- one refresh was asked for; the two refused requests and the first one reached /resource
      assert.equal(2, #sp.requests("/token/slow"))
      assert.equal(3, #sp.requests("/resource"))
    end)

    it("connkit.all", function()
      local acct = cc_account("/token/slow?delay=3")
      local reqs = {
        assert(acct:prepare { url = "/resource", timeout = 1 }),
        assert(acct:prepare { url = "/resource", timeout = 1 }),
      }
      local out, _, took = timed(function() return connkit.all(reqs) end)
      within(took, 1)
      for i = 1, 2 do assert.equal("timeout", out[i].err.code) end
      assert.equal(1, #sp.requests("/token/slow"))
      assert.equal(0, #sp.requests("/resource"))
    end)
  end)

  describe("the wait for another process's refresh lock", function()
    it("ends at the request's deadline, not at lock_timeout; no cooldown follows", function()
      sp.reset()
      local dir = helpers.tmpdir("deadline-lock")
      local skey = core.b64encode(core.random(32))
      local ready = dir .. "/holder.ready"
      local script = dir .. "/holder.lua"
      helpers.write_file(script, [[
        local connkit = require "connkit"
        local s = connkit.store.file(arg[1], { key = arg[2] })
        local unlock = assert(s.lock(arg[3]))
        local f = assert(io.open(arg[4], "w")) f:write("locked") f:close()
        require("connkit.core").sleep(tonumber(arg[5]))
        unlock()
      ]])
      local holder = helpers.spawn("lockholder", ("%s %s %s %s %s %s 4"):format(helpers.lua,
        helpers.shell_quote(script), helpers.shell_quote(dir), helpers.shell_quote(skey), "locked",
        helpers.shell_quote(ready)), { env = helpers.child_env() })
      local t0 = core.now()
      while not helpers.read_file(ready) do
        assert(core.now() - t0 < 10, "the lock holder did not start")
        core.sleep(0.02)
      end
      local acct = cc_account("/token/ok", { id = "locked", store = connkit.store.file(dir, { key = skey }) })
      local res, err, took = timed(function() return acct:get("/resource", { timeout = 1 }) end)
      assert.is_nil(res)
      assert.equal("timeout", err.code)
      within(took, 1)
      -- a handle: start() waits for the lock no longer than the deadline either
      local handle
      res, err, took = timed(function()
        handle = assert(acct:prepare { url = "/resource", timeout = 1 }):start()
        return handle:result()
      end)
      assert.is_nil(res)
      assert.equal("timeout", err.code)
      within(took, 1)
      assert.equal(0, #sp.requests("/token/ok"))
      -- once the holder lets go, the next request fetches at once (the
      -- deadline was the request's, not a failure of the token endpoint)
      while helpers.alive(holder.pid) do core.sleep(0.05) end
      res = assert(acct:get("/resource", { timeout = 5 }))
      assert.equal(200, res.status)
      assert.equal(1, #sp.requests("/token/ok"))
      helpers.stop(holder)
    end)
  end)

  describe("retries", function()
    local rules = { max = 3, statuses = { 503 }, base = 1.5 }

    it("a retry that cannot start before the deadline is not started (a reply is given back)", function()
      local k = key()
      local acct = static_account { retry = rules }
      local res, _, took = timed(function()
        return acct:get("/flaky", { query = { key = k, fail = 5 }, timeout = 0.6 })
      end)
      assert.equal(503, res.status)
      assert.equal(1, res.attempts)
      within(took, 0.6)
      assert.equal(1, sp.attempts(k))
    end)

    it("a failure says that the retry did not fit", function()
      local acct = static_account { retry = rules }
      local url = ("http://127.0.0.1:%d/x"):format(helpers.free_port()) -- nobody listens
      local res, err, took = timed(function() return acct:get(url, { timeout = 0.6 }) end)
      assert.is_nil(res)
      assert.equal("connect", err.code)
      assert.equal(1, err.attempts)
      assert.matches("not retried: the next attempt would start after the request's timeout", err.message, 1, true)
      within(took, 0.6)
      -- the same through a handle
      local h = assert(acct:prepare { url = url, timeout = 0.6 }):start()
      res, err, took = timed(function() return h:result() end)
      assert.equal("connect", err.code)
      assert.equal(1, err.attempts)
      within(took, 0.6)
    end)

    it("a retry that fits is made within the same deadline", function()
      local k = key()
      local acct = static_account { retry = { max = 3, statuses = { 503 }, base = 0.1 } }
      local res = assert(acct:get("/flaky", { query = { key = k, fail = 1 }, timeout = 3 }))
      assert.equal(200, res.status)
      assert.equal(2, res.attempts)
      assert.equal(2, sp.attempts(k))
    end)
  end)
end)

describe("timeouts under a millisecond", function()
  setup(function() sp = helpers.peer("scripted") end)

  -- Starts `spec` on the engine against the silent listener and polls for
  -- up to 3 s: the code it ended with, or nil if it was still running.
  local function outcome(spec)
    local engine = require("connkit.transport.curl").engine
    local xfer = assert(engine:start(spec))
    local t0 = core.now()
    while not xfer:done() and core.now() - t0 < 3 do engine:poll(0.05) end
    if not xfer:done() then xfer:cancel() return nil, core.now() - t0 end
    local _, code = xfer:result()
    return code, core.now() - t0
  end

  it("a transfer with 0.4 ms left times out (curl reads 0 ms as none)", function()
    local code, took = outcome(assert(core.wire { url = sp.hang_url .. "/", timeout = 0.0004 }))
    assert.equal("timeout", code)
    within(took, 0)
  end)

  it("a request whose deadline has 0.4 ms left times out", function()
    local req = assert(static_account():prepare { url = sp.hang_url .. "/", timeout = 2, auth = false })
    local w = assert(deadlines.spec_until(require("connkit.transport.curl"), req, core.now() + 0.0004))
    local code, took = outcome(w)
    assert.equal("timeout", code)
    within(took, 0)
    -- and one whose deadline has passed is not sent at all
    local none, err = deadlines.spec_until(require("connkit.transport.curl"), req, core.now() - 0.001)
    assert.is_nil(none)
    assert.equal("timeout", err.code)
  end)

  -- Runs a Lua script in a child process (killed after 5 s, so a wait for
  -- ever fails the test instead of hanging it): its output and the seconds
  -- it took.
  local function child(code)
    local script = helpers.tmpdir("deadline-child") .. "/c.lua"
    helpers.write_file(script, code)
    local t0 = core.now()
    local p = assert(io.popen(("timeout 5 %s %s 2>&1"):format(helpers.lua, helpers.shell_quote(script))))
    local out = p:read("*a")
    p:close()
    return out, core.now() - t0
  end

  it("an SFTP connect with 0.4 ms is a timeout, not a wait for ever", function()
    local out, took = child(([[
      local core = require "connkit.core"
      local s, code = core.ssh_connect("127.0.0.1", %d, 0.0004, {})
      io.write(tostring(code))
    ]]):format(sp.hang_port))
    assert.equal("timeout", out)
    within(took, 0)
  end)

  it("the loopback listener refuses a NaN wait instead of waiting for ever", function()
    local out, took = child([[
      local core = require "connkit.core"
      local l = assert(core.listen(0))
      local ok, err = pcall(l.accept, l, 0 / 0)
      io.write(ok and "waited" or tostring(err))
    ]])
    assert.matches("not NaN", out, 1, true)
    within(took, 0)
  end)

  it("NaN is refused where seconds are given", function()
    local acct = static_account()
    assert.has_error(function() acct:get("/status", { timeout = 0 / 0 }) end)
    assert.has_error(function() connkit.poll(0 / 0) end)
    assert.has_error(function() core.wire { url = sp.url, timeout = 0 / 0 } end)
    assert.has_error(function() connkit.integration { name = "N", key = "nan1", auth = "none", timeout = 0 / 0 } end)
  end)
end)
