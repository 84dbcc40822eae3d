-- Fault matrix of plain requests (acct:request), connkit.all and
-- non-blocking handles (req:start + connkit.poll) against httpbin behind the
-- fault proxy (spec/peers/faultproxy.js), plus nginx stopped by SIGSTOP and a
-- peer killed mid-transfer. Every call returns within its timeout (faults.TIMEOUT) plus
-- faults.BOUND with a documented code (or succeeds, for the faults a correct
-- client gets through: what httpbin received and sent back is checked), the
-- engine is usable after it (a following request through the same listener
-- succeeds and nothing is left in flight), and no message leaks a secret.
local connkit = require "connkit"
local helpers = require "helpers"
local faults = require "support.faults"
local engine = require("connkit.transport.curl").engine

local TIMEOUT = faults.TIMEOUT
local TOKEN = "sk-fault-9c1f27d3e8a4b6f0"
local PAD = 3000 -- httpbin echoes the body twice (json, data): the reply is ~6.5 kB
faults.secret(TOKEN)

local bin, fp -- httpbin, the fault proxy
local n = 0

local function account(base)
  n = n + 1
  local acct = connkit.integration {
    name = "Fault HTTP " .. n, key = "faulthttp" .. n, auth = "api_token",
    base_url = "{base}", parameters = { base = { required = true } },
  }:account { parameters = { base = base }, credentials = { token = TOKEN } }
  faults.message(acct)
  return acct
end

local function opts(tag)
  return { method = "POST", url = "/anything/" .. tag, json = { pad = ("x"):rep(PAD) }, timeout = TIMEOUT }
end

-- Each call returns a list of { res, err } (one per request it made).
local CALLS = {
  { "request", function(acct, tag)
    local res, err = acct:request(opts(tag))
    return { { res, err } }
  end },
  { "all x3", function(acct, tag)
    local reqs = {}
    for i = 1, 3 do reqs[i] = assert(acct:prepare(opts(tag .. i))) end
    local out = {}
    for i, r in ipairs(connkit.all(reqs, { concurrency = 3 })) do out[i] = { r.res, r.err } end
    return out
  end },
  { "start+poll", function(acct, tag)
    local req = assert(acct:prepare(opts(tag)))
    faults.message(req)
    local h = req:start()
    while not h:done() do connkit.poll(0.05) end
    local res, err = h:result()
    return { { res, err } }
  end },
}

-- A reply that must have come from httpbin for this request.
local function assert_echo(res, tag)
  assert.equal(200, res.status)
  local j = res:json()
  assert.equal("/anything/" .. tag, j.url:match("^https?://[^/]+(/.*)$"))
  assert.equal("Bearer " .. TOKEN, j.headers.Authorization)
  assert.equal(PAD, #j.json.pad)
end

-- The engine takes the next request through the same listener.
local function assert_usable(acct, port, tag)
  fp.set(port, "none")
  assert.equal(0, engine:pending())
  local res, err = acct:request(opts(tag .. "-after"))
  assert(res, err and err.message)
  assert_echo(res, tag .. "-after")
  assert.equal(0, engine:pending())
end

-- Runs one call under a fault and checks every rule of the matrix.
local function cell(call, fn, fault, kind, arg, expect_codes)
  local port = fp.listen(bin.port, "none")
  local acct = account("http://127.0.0.1:" .. port)
  fp.set(port, kind, arg)
  local tag = (call .. "-" .. fault):gsub("[^%w]", "")
  local elapsed, results = faults.timed(fn, acct, tag)
  local first_err
  for _, r in ipairs(results) do first_err = first_err or r[2]; faults.message(r[2]) end
  faults.record(call, fault, elapsed, first_err)
  if faults.HARMLESS[fault] then
    for i, r in ipairs(results) do
      assert(r[1], r[2] and r[2].message)
      assert_echo(r[1], #results > 1 and tag .. i or tag)
    end
  else
    for _, r in ipairs(results) do
      faults.assert_failure(call .. " x " .. fault, elapsed, TIMEOUT, r[1], r[2], expect_codes)
    end
  end
  assert_usable(acct, port, tag)
end

setup(function()
  bin = helpers.peer("httpbin")
  fp = helpers.peer("faultproxy")
end)

teardown(function()
  faults.write("http", "requests, connkit.all, handles x faults (httpbin behind the fault proxy; timeout " .. TIMEOUT .. " s)")
end)

local EXPECT = {
  latency = { "timeout" }, bandwidth = { "timeout" }, stall = { "timeout" },
  stall_headers = { "timeout" }, drip = { "timeout" }, reset = { "network" }, cut = { "network" },
  cut_headers = { "network" },
}

for _, c in ipairs(CALLS) do
  describe("fault matrix: " .. c[1], function()
    for _, f in ipairs(faults.FAULTS) do
      local fault, kind, arg = f[1], f[2], f[3]
      it(fault .. (faults.HARMLESS[fault] and ": goes through" or ": fails in time with " .. table.concat(EXPECT[fault], "/")), function()
        cell(c[1], c[2], fault, kind, arg, EXPECT[fault])
      end)
    end
  end)
end

describe("fault matrix: real peers stopped and killed", function()
  local nginx

  setup(function() nginx = require("peers.nginx")(helpers) end)
  teardown(function() if nginx then nginx.stop() end end)

  -- nginx's worker (the process that serves connections) stopped by
  -- SIGSTOP, then let go with SIGCONT: every call times out in time, the next
  -- one is served.
  local function worker_pid()
    local master = assert(helpers.read_file(nginx.dir .. "/nginx.pid")):match("%d+")
    local ok, out = helpers.run("pgrep -P " .. master)
    assert(ok, out)
    return assert(out:match("%d+"))
  end

  for _, c in ipairs(CALLS) do
    it(c[1] .. ": nginx stopped by SIGSTOP times out in time; served after SIGCONT", function()
      local acct = account(nginx.url)
      local fn = c[2]
      local pid = worker_pid()
      assert(helpers.execute("kill -STOP " .. pid))
      local elapsed, results = faults.timed(function()
        -- nginx has no /anything: a GET of /echo is enough here
        local r = {}
        if c[1] == "request" then
          r[1] = { acct:get("/echo/stopped", { timeout = TIMEOUT }) }
        else
          r = fn(acct, "stopped")
        end
        return r
      end)
      assert(helpers.execute("kill -CONT " .. pid))
      faults.record(c[1], "SIGSTOP", elapsed, results[1][2])
      for _, r in ipairs(results) do
        faults.message(r[2])
        faults.assert_failure(c[1] .. " x SIGSTOP", elapsed, TIMEOUT, r[1], r[2], { "timeout" })
      end
      local res = assert(acct:get("/echo/after-cont", { timeout = 5 }))
      assert.matches("GET /echo/after%-cont", res.body)
      assert.equal(0, engine:pending())
    end)
  end

  -- A private httpbin's worker (the gunicorn process serving the
  -- connection) is killed with SIGKILL while /drip sends its body: the
  -- connection ends, the call fails at once with network, not after its
  -- timeout (3 s here). gunicorn starts a new worker for the next cell.
  local private
  local function worker(not_pid)
    for _ = 1, 100 do
      local _, out = helpers.run("pgrep -P " .. private.pid)
      local pid = out:match("%d+")
      if pid and pid ~= not_pid then return pid end
      require("socket").sleep(0.05)
    end
    error("httpbin has no worker")
  end
  local last_killed

  for _, c in ipairs(CALLS) do
    it(c[1] .. ": httpbin killed mid-transfer fails with network", function()
      if not private then private = require("peers.httpbin")(helpers) end
      local pid = worker(last_killed)
      helpers.wait_port(private.port, 10)
      last_killed = pid
      local acct = account(private.url)
      local deadline = 3
      local o = { url = "/drip?duration=2&numbytes=20&delay=0", timeout = deadline }
      helpers.execute(("(sleep 0.4; kill -9 %s) >/dev/null 2>&1 &"):format(pid))
      local elapsed, results = faults.timed(function()
        if c[1] == "request" then return { { acct:request(o) } } end
        if c[1] == "all x3" then
          local reqs, out = {}, {}
          for i = 1, 3 do reqs[i] = assert(acct:prepare(o)) end
          for i, r in ipairs(connkit.all(reqs, { concurrency = 3 })) do out[i] = { r.res, r.err } end
          return out
        end
        local h = assert(acct:prepare(o)):start()
        while not h:done() do connkit.poll(0.05) end
        return { { h:result() } }
      end)
      faults.record(c[1], "peer killed", elapsed, results[1][2])
      for _, r in ipairs(results) do
        faults.message(r[2])
        faults.assert_failure(c[1] .. " x killed", elapsed, 0.4, r[1], r[2], { "network" })
      end
      assert.equal(0, engine:pending())
      local res = assert(account(bin.url):get("/get", { timeout = 5 }))
      assert.equal(200, res.status)
    end)
  end

  teardown(function() if private then private.stop() end end)
end)

describe("fault matrix: secrets", function()
  it("no message of the run holds a secret or 4+ characters of one", function()
    assert.same({}, faults.leaks())
  end)
end)
