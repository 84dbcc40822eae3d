-- The pollable engine for event-loop hosts: connkit.pollfd() is readable
-- exactly when the engine has work, connkit.timeout() says when poll(0)
-- must run at the latest, and a luv loop drives requests with them without
-- busy polling (examples/luv_loop.lua). Each case runs in a child process:
-- pollfd() turns its engine event driven for good, and the rest of the
-- suite runs on the engine as it is by default.
local helpers = require "helpers"
local cjson = require "cjson"

local q = helpers.shell_quote

-- A child's prelude: an account on httpbin (arg[1]), the pollfd as an
-- object luasocket's select takes, a driver that sleeps in select until the
-- fd is readable or the timeout runs out, and `out`, printed as JSON.
local PRELUDE = [[
local connkit = require "connkit"
local socket = require "socket"
local cjson = require "cjson"
local now = socket.gettime
local acct = connkit.integration {
  name = "Poll", key = "poll", auth = "none", base_url = "{base}", parameters = { "base" },
}:account { parameters = { base = arg[1] } }
local out = {}
local FD
local fdobj = { getfd = function() return FD end, dirty = function() return false end }
local function readable(secs)
  local r = socket.select({ fdobj }, nil, secs)
  return #r > 0
end
-- drives until done(); returns the wakeups (each one poll(0))
local function drive(done, limit)
  local wakeups, t0 = 0, now()
  while not done() do
    assert(now() - t0 < (limit or 10), "not done in time")
    local t = connkit.timeout()
    readable(t or 5)
    connkit.poll(0)
    wakeups = wakeups + 1
  end
  return wakeups
end
]]

local function run_child(tag, body, base)
  local path = helpers.tmpdir("pollfd-" .. tag) .. "/child.lua"
  helpers.write_file(path, PRELUDE .. body .. "\nprint(cjson.encode(out))\n")
  local env = { "env" }
  for k, v in pairs(helpers.child_env()) do env[#env + 1] = k .. "=" .. q(v) end
  local ok, out = helpers.run(("%s timeout 30 %s %s %s 2>&1"):format(
    table.concat(env, " "), helpers.lua, q(path), q(base)))
  assert(ok, out)
  return cjson.decode(out:match("([^\n]*)\n*$")), out
end

describe("connkit.pollfd and connkit.timeout", function()
  local hb

  setup(function()
    hb = helpers.peer("httpbin")
  end)

  it("the fd is readable only when a transfer has work, and quiet when idle", function()
    local r = run_child("fd", [[
      FD = connkit.pollfd()
      out.fd, out.same = FD, connkit.pollfd() == FD
      out.idle_readable, out.idle_timeout = readable(0.1), tostring(connkit.timeout())
      local h = acct:prepare { url = "/delay/1", headers = { ["X-Probe"] = "held" } }:start()
      out.start_timeout = connkit.timeout()
      local t0 = now()
      -- connect and send: the fd or the timer ask for it, until the request
      -- waits for the server's reply
      local steps = 0
      while true do
        local t = connkit.timeout()
        if not readable(0) then
          if not t or t > 0.5 then break end
          readable(t) -- a timer of curl's
        end
        connkit.poll(0)
        steps = steps + 1
        assert(steps < 100, "the fd stays readable while the server holds the reply")
      end
      out.quiet_after = now() - t0
      out.readable_while_held = readable(0.3)
      out.readable_later = readable(2)
      out.ready_after = now() - t0
      out.wakeups = drive(function() return h:done() end)
      local res = assert(h:result())
      out.status, out.probe = res.status, res:json().headers["X-Probe"]
      out.idle_readable_after = readable(0.2)
      out.idle_timeout_after = tostring(connkit.timeout())
    ]], hb.url)
    assert.is_true(r.fd >= 0)
    assert.is_true(r.same)
    assert.is_false(r.idle_readable)
    assert.equal("nil", r.idle_timeout)
    assert.equal(0, r.start_timeout) -- a transfer just started: poll now
    assert.is_true(r.quiet_after < 0.5, "took " .. r.quiet_after .. " s to send")
    assert.is_false(r.readable_while_held)
    assert.is_true(r.readable_later)
    assert.is_true(r.ready_after > 0.9 and r.ready_after < 2, "ready after " .. r.ready_after)
    assert.is_true(r.wakeups <= 10, r.wakeups .. " wakeups")
    assert.equal(200, r.status)
    assert.equal("held", r.probe) -- what httpbin received
    assert.is_false(r.idle_readable_after)
    assert.equal("nil", r.idle_timeout_after)
  end)

  it("timeout() covers a retry's wait, which the engine knows nothing of", function()
    local r = run_child("retry", [[
      FD = connkit.pollfd()
      local h = acct:prepare { url = "/response-headers", query = { ["Retry-After"] = "1", n = "7" },
        retry = { max = 1, statuses = { 200 } } }:start()
      local t0 = now()
      -- until the first reply is in and the retry waits
      local engine = require("connkit.core").engine()
      drive(function()
        assert(not h:done(), "no retry") -- done() moves the handle on: the retry waits
        local t = connkit.timeout()
        return engine:pending() == 0 and t ~= nil and t > 0.5
      end)
      out.wait = connkit.timeout()
      out.engine_timeout = tostring(engine:timeout())
      out.fd_readable = readable(0)
      out.wakeups = drive(function() return h:done() end)
      out.elapsed = now() - t0
      local res = assert(h:result())
      out.status, out.attempts, out.n = res.status, res.attempts, res:json().n
    ]], hb.url)
    assert.is_true(r.wait > 0.8 and r.wait <= 1, "timeout() was " .. r.wait)
    assert.equal("nil", r.engine_timeout) -- nothing in flight: only the retry waits
    assert.is_false(r.fd_readable)
    assert.is_true(r.wakeups <= 10, r.wakeups .. " wakeups")
    assert.is_true(r.elapsed >= 1 and r.elapsed < 2.5, "took " .. r.elapsed .. " s")
    assert.equal(200, r.status)
    assert.equal(2, r.attempts)
    assert.equal("7", r.n) -- httpbin echoes the query it received
  end)

  it("takes over transfers started before the first pollfd()", function()
    local r = run_child("handover", [[
      local h = acct:prepare { url = "/delay/1", query = { k = "before" } }:start()
      -- connected and sent on the default engine, curl's short timers past
      local t0 = now()
      while now() - t0 < 0.4 do connkit.poll(0.05) end
      FD = connkit.pollfd()
      out.wakeups = drive(function() return h:done() end)
      out.elapsed = now() - t0
      local res = assert(h:result())
      out.status, out.k = res.status, res:json().args.k
      out.idle_readable = readable(0.2)
    ]], hb.url)
    assert.equal(200, r.status)
    assert.equal("before", r.k)
    assert.is_true(r.elapsed < 1.8, "took " .. r.elapsed .. " s")
    assert.is_true(r.wakeups <= 10, r.wakeups .. " wakeups")
    assert.is_false(r.idle_readable)
  end)

  it("blocking requests and connkit.all run on the event-driven engine and leave it quiet", function()
    local r = run_child("blocking", [[
      FD = connkit.pollfd()
      local res = assert(acct:get("/anything/one"))
      out.one = res:json().url
      local reqs = {}
      for i = 1, 4 do reqs[i] = acct:prepare { url = "/anything/{i}", vars = { i = i } } end
      out.all = {}
      for i, x in ipairs(connkit.all(reqs, { concurrency = 2 })) do
        out.all[i] = x.res and x.res:json().url or x.err.code
      end
      -- a started request beside a blocking one
      local h = acct:prepare { url = "/delay/1" }:start()
      out.blocking_status = assert(acct:get("/get")).status
      out.wakeups = drive(function() return h:done() end)
      out.started_status = assert(h:result()).status
      out.idle_readable = readable(0.2)
      out.idle_timeout = tostring(connkit.timeout())
    ]], hb.url)
    assert.equal(hb.url .. "/anything/one", r.one)
    for i = 1, 4 do assert.equal(hb.url .. "/anything/" .. i, r.all[i]) end
    assert.equal(200, r.blocking_status)
    assert.equal(200, r.started_status)
    assert.is_true(r.wakeups <= 10, r.wakeups .. " wakeups")
    assert.is_false(r.idle_readable)
    assert.equal("nil", r.idle_timeout)
  end)
end)

describe("examples/luv_loop.lua", function()
  local has_luv = helpers.run(helpers.lua .. " -e 'require \"luv\"' 2>&1")

  it("drives requests from a luv loop without busy polling", function()
    if not has_luv then
      pending("lua-luv is not installed for " .. helpers.lua)
      return
    end
    local hb = helpers.peer("httpbin")
    local env = { "env" }
    for k, v in pairs(helpers.child_env()) do env[#env + 1] = k .. "=" .. q(v) end
    local ok, out = helpers.run(("%s timeout 30 %s %s %s 2>&1"):format(table.concat(env, " "),
      helpers.lua, q(helpers.root .. "/examples/luv_loop.lua"), q(hb.url)))
    assert.is_true(ok, out)
    -- every reply came, each with what httpbin received
    assert.matches("reply 1: 200 " .. hb.url:gsub("%p", "%%%0") .. "/delay/1\n", out)
    for i = 1, 5 do
      assert.matches(("reply %d: 200 json.n=%d\n"):format(i + 1, i), out)
    end
    local secs, wakeups, iterations = out:match("done in ([%d.]+) s: (%d+) wakeups, (%d+) loop iterations")
    assert.is_truthy(secs, out)
    -- the slow reply takes 1 s; the loop slept meanwhile
    assert.is_true(tonumber(secs) >= 1 and tonumber(secs) < 2, out)
    assert.is_true(tonumber(wakeups) <= 40, out)
    assert.is_true(tonumber(iterations) <= 60, out)
  end)
end)

describe("examples/nvim_loop.lua", function()
  -- Neovim 0.7 runs on LuaJIT: only a LuaJIT build of connkit loads in it
  it("drives requests from Neovim's vim.loop, headless", function()
    if helpers.lua ~= "luajit" then
      pending("runs with the LuaJIT build (make test LUA=luajit)")
      return
    end
    if not helpers.execute("command -v nvim > /dev/null") then
      pending("Neovim (nvim) is not installed")
      return
    end
    local hb = helpers.peer("httpbin")
    local env = { "env", "BASE_URL=" .. q(hb.url) }
    for k, v in pairs(helpers.child_env()) do env[#env + 1] = k .. "=" .. q(v) end
    local ok, out = helpers.run(("cd %s && %s timeout 30 nvim --headless -u NONE -i NONE -c %s 2>&1"):format(
      q(helpers.root), table.concat(env, " "), q("luafile examples/nvim_loop.lua")))
    assert.is_true(ok, out)
    for i = 1, 3 do assert.matches(("reply %d: 200 nvim n=%d\n"):format(i, i), out) end
    local wakeups = tonumber(out:match("done: (%d+) wakeups"))
    assert.is_truthy(wakeups, out)
    assert.is_true(wakeups <= 30, out)
  end)
end)
