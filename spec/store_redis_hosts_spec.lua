-- Many hosts sharing one account through connkit.store.redis, against
-- oidc-provider with rotating refresh tokens (reusing an old one revokes the
-- grant). Workers are separate processes (spec/support/redis_worker.lua);
-- test-only fail points kill (SIGKILL) or stop (SIGSTOP) a worker at a
-- chosen step. Every assertion is on what oidc-provider counted.
--
-- The hosts (spec/support/redis_hosts.lua): as root, network namespaces on
-- one bridge, reaching redis-server and oidc-provider at the bridge
-- address; otherwise processes on loopback (the run says which).
local helpers = require "helpers"
local core = require "connkit.core"
local socket = require "socket"
local connkit = require "connkit"
local account = require "support.redis_account"
local redis_hosts = require "support.redis_hosts"

local SECONDS = tonumber(os.getenv("REDIS_HOSTS_SECONDS")) or 60
local KEY = core.b64encode(core.random(32))

local r, hosts
local seq = 0

-- A worker on host h (1..3).
local function spawn(h, env)
  seq = seq + 1
  return hosts.spawn(h, "rworker" .. seq, helpers.lua .. " " .. helpers.shell_quote(helpers.root
    .. "/spec/support/redis_worker.lua"), helpers.child_env(env))
end

local exposed = {}
local function env_for(op, id, extra)
  for _, port in ipairs({ op.port, r.port }) do
    if not exposed[port] then hosts.expose(port) exposed[port] = true end
  end
  local e = { RW_ISSUER = hosts.url(op.issuer), RW_URL = hosts.url(r.url), RW_KEY = KEY, RW_ID = id, RW_GRANT = "code" }
  for k, v in pairs(extra or {}) do e[k] = tostring(v) end
  if extra and extra.RW_URL then
    local port = tonumber(extra.RW_URL:match(":(%d+)/"))
    if not exposed[port] then hosts.expose(port) exposed[port] = true end
    e.RW_URL = hosts.url(extra.RW_URL)
  end
  return e
end

-- Waits until every worker has exited (at most `limit` seconds); their output.
local function finish(workers, limit)
  local deadline = socket.gettime() + limit
  for _, w in ipairs(workers) do
    while helpers.alive(w.pid) and socket.gettime() < deadline do socket.sleep(0.05) end
    assert.is_false(helpers.alive(w.pid), "a worker did not finish in time: " .. (helpers.read_file(w.log) or ""))
  end
  local outs = {}
  for i, w in ipairs(workers) do outs[i] = helpers.read_file(w.log) or "" end
  return outs
end

local function wait_file(path, limit)
  local deadline = socket.gettime() + limit
  while not helpers.read_file(path) do
    assert.is_true(socket.gettime() < deadline, "the fail point was not reached")
    socket.sleep(0.02)
  end
end

-- A fresh authorization-code account on the Redis store, its token made
-- due now (still valid at the server for an hour).
local function authorized(op, id)
  local store = connkit.store.redis { url = r.url, key = KEY }
  local acct = account.account("code", op.issuer, id, store)
  local url = acct:authorize_url { redirect_uri = op.endpoints.callback }
  assert(acct:finish_authorization(assert(op.authorize(url))))
  local rec = assert(store.get(id))
  rec.issued_at, rec.expires_at = core.now() - 3599, core.now() + 1
  assert(store.put(id, rec))
  op.reset()
  return store
end

local function token_summary(op)
  local reqs = op.token_requests()
  local errors_seen = {}
  for _, q in ipairs(reqs) do
    if q.status ~= 200 then errors_seen[#errors_seen + 1] = tostring(q.error) .. ":" .. tostring(q.error_detail) end
  end
  return reqs, errors_seen
end

describe("Redis store across hosts", function()
  setup(function()
    r = helpers.peer("redis")
    hosts = redis_hosts.new(helpers, 3)
    io.stdout:write("\n[store_redis_hosts] hosts: ", hosts.kind == "namespaces"
      and ("3 network namespaces on bridge " .. hosts.bridge .. ", peers at " .. hosts.addr)
      or "processes on loopback (not root: no network namespaces)", "\n")
  end)
  teardown(function() hosts.stop() end)

  it("(a) 3 hosts x 8 processes: one token request per expiry, no invalid_grant", function()
    local op = helpers.peer("oidc").new { access_ttl = 4 }
    finally(function() op.stop() end)
    local id = "fleet-a-" .. core.hex(core.random(4))
    authorized(op, id)
    local workers = {}
    local t0 = socket.gettime()
    for host = 1, 3 do
      for p = 1, 8 do
        workers[#workers + 1] = spawn(host, env_for(op, id, { RW_SECONDS = SECONDS, RW_GAP = 0.2 }))
      end
    end
    local outs = finish(workers, SECONDS + 60)
    local elapsed = socket.gettime() - t0
    local total_ok = 0
    for i, out in ipairs(outs) do
      local ok, fail = out:match("ok=(%d+) fail=(%d+)")
      assert.equal("0", fail, "worker " .. i .. ": " .. out)
      total_ok = total_ok + tonumber(ok)
    end
    local reqs, errs = token_summary(op)
    assert.same({}, errs)
    local used, last = {}, nil
    for _, q in ipairs(reqs) do
      assert.equal("refresh_token", q.grant_type)
      assert.is_nil(used[q.refresh_token_sha256], "a refresh token was used twice")
      used[q.refresh_token_sha256] = true
      if last then assert.is_true(q.time - last >= 1.5, ("two token requests %.2f s apart"):format(q.time - last)) end
      last = q.time
    end
    -- a 4 s token is renewed when half its life is left: every ~2 s
    local expected = elapsed / 2
    assert.is_true(#reqs >= math.floor(expected) - 2 and #reqs <= math.ceil(expected) + 1,
      ("%d token requests in %.1f s"):format(#reqs, elapsed))
    assert.equal(total_ok, op.stats().api.ok)
    io.stdout:write(("[store_redis_hosts] (a) 3 hosts, %d processes, %.0f s, %d requests, %d token requests, "
      .. "%.2f per expiry, 0 invalid_grant\n"):format(#workers, elapsed, total_ok, #reqs, #reqs / expected))
  end)

  it("(b) a holder killed (SIGKILL) before its token request: the others get a token within lock_ttl + timeout", function()
    local op = helpers.peer("oidc")
    local id = "fleet-b-" .. core.hex(core.random(4))
    authorized(op, id)
    local mark = helpers.tmpdir("rmark") .. "/fired"
    local killer = spawn(1, env_for(op, id, { RW_COUNT = 1, RW_LOCK_TTL = 3, RW_FAIL = "kill_holding", RW_MARK = mark }))
    wait_file(mark, 10)
    finish({ killer }, 5)
    local t0 = socket.gettime()
    local workers = {}
    for i = 1, 4 do workers[i] = spawn(i + 1, env_for(op, id, { RW_COUNT = 3, RW_GAP = 0.1, RW_LOCK_TTL = 3, RW_TIMEOUT = 10 })) end
    local outs = finish(workers, 20)
    local took = socket.gettime() - t0
    for i, out in ipairs(outs) do assert.matches("ok=3 fail=0", out, 1, true, "worker " .. i .. ": " .. out) end
    assert.is_true(took < 3 + 10, ("took %.1f s"):format(took))
    local reqs, errs = token_summary(op)
    assert.same({}, errs)
    assert.equal(1, #reqs, "one token request: the killed holder sent none")
    assert.equal(12, op.stats().api.ok)
  end)

  it("(d) a holder stopped (SIGSTOP) past its lease, then continued, sends no token request and uses the winner's", function()
    local op = helpers.peer("oidc")
    local id = "fleet-d-" .. core.hex(core.random(4))
    authorized(op, id)
    local mark = helpers.tmpdir("rmark") .. "/fired"
    local stopped = spawn(1, env_for(op, id, { RW_COUNT = 1, RW_LOCK_TTL = 2, RW_FAIL = "stop_holding", RW_MARK = mark }))
    finally(function() helpers.execute("kill -CONT " .. stopped.pid .. " 2>/dev/null") end)
    wait_file(mark, 10)
    local workers = {}
    for i = 1, 2 do workers[i] = spawn(i + 1, env_for(op, id, { RW_COUNT = 2, RW_LOCK_TTL = 2 })) end
    local outs = finish(workers, 20)
    helpers.execute("kill -CONT " .. stopped.pid)
    local out = finish({ stopped }, 10)[1]
    local reqs, errs = token_summary(op)
    assert.same({}, errs)
    assert.equal(1, #reqs)
    local winner = reqs[1].issued_access_token_sha256
    assert.matches("ok=1 fail=0 token_sha256=" .. winner, out, 1, true)
    for i, o in ipairs(outs) do assert.matches("ok=2 fail=0 token_sha256=" .. winner, o, 1, true, "worker " .. i) end
    assert.equal(5, op.stats().api.ok)
  end)

  it("(d) a holder stopped past its lease after its token reply: its commit is refused, the newer token stays", function()
    local op = helpers.peer("oidc")
    op.reset()
    local id = "fleet-d2-" .. core.hex(core.random(4))
    local store = connkit.store.redis { url = r.url, key = KEY }
    local mark = helpers.tmpdir("rmark") .. "/fired"
    local stopped = spawn(1, env_for(op, id, { RW_GRANT = "cc", RW_COUNT = 1, RW_LOCK_TTL = 2,
      RW_FAIL = "stop_before_commit", RW_MARK = mark }))
    finally(function() helpers.execute("kill -CONT " .. stopped.pid .. " 2>/dev/null") end)
    wait_file(mark, 10)
    local workers = {}
    for i = 1, 2 do workers[i] = spawn(i + 1, env_for(op, id, { RW_GRANT = "cc", RW_COUNT = 2, RW_LOCK_TTL = 2 })) end
    local outs = finish(workers, 20)
    helpers.execute("kill -CONT " .. stopped.pid)
    local out = finish({ stopped }, 10)[1]
    local reqs, errs = token_summary(op)
    assert.same({}, errs)
    assert.equal(2, #reqs, "the stopped holder's token request and the winner's")
    local winner = reqs[2].issued_access_token_sha256
    assert.equal(winner, op.sha256(assert(store.get(id)).access_token), "the store keeps the newer token")
    assert.matches("ok=1 fail=0 token_sha256=" .. winner, out, 1, true)
    for i, o in ipairs(outs) do assert.matches("ok=2 fail=0 token_sha256=" .. winner, o, 1, true, "worker " .. i) end
  end)

  it("(c) a holder killed after the token reply, before its commit: the next one says the refresh was lost mid-flight", function()
    local op = helpers.peer("oidc")
    local id = "fleet-c-" .. core.hex(core.random(4))
    authorized(op, id)
    local mark = helpers.tmpdir("rmark") .. "/fired"
    local killer = spawn(1, env_for(op, id, { RW_COUNT = 1, RW_LOCK_TTL = 2, RW_FAIL = "kill_before_commit", RW_MARK = mark }))
    wait_file(mark, 10)
    finish({ killer }, 5)
    socket.sleep(1) -- the stored token has expired now: nothing to serve requests with
    local next_holder = spawn(2, env_for(op, id, { RW_COUNT = 3, RW_GAP = 0.05, RW_LOCK_TTL = 2 }))
    local out = finish({ next_holder }, 15)[1]
    assert.matches("ok=0 fail=3", out, 1, true)
    local n = 0
    for line in out:gmatch("fail: ([^\n]*)") do
      n = n + 1
      assert.matches("^reauthorize .*refresh was lost mid%-flight", line)
    end
    assert.equal(3, n)
    local reqs = op.token_requests()
    assert.equal(2, #reqs, "the killed holder's request and one more: no retry loop")
    assert.equal(200, reqs[1].status)
    assert.equal("invalid_grant", reqs[2].error)
    assert.equal(reqs[1].refresh_token_sha256, reqs[2].refresh_token_sha256)
  end)

  it("(e) Redis restarted (AOF) in the middle: no token rolls back, requests keep working", function()
    local aof = helpers.peer("redis").new { appendonly = true }
    finally(function() aof.stop() end)
    local op = helpers.peer("oidc").new { access_ttl = 4 }
    finally(function() op.stop() end)
    local saved = r
    r = aof
    local id = "fleet-e-" .. core.hex(core.random(4))
    local ok_auth, err_auth = pcall(authorized, op, id)
    r = saved
    assert(ok_auth, err_auth)
    local rkey = "connkit:{" .. id .. "}:record"
    local workers = {}
    for i = 1, 6 do workers[i] = spawn(i, env_for(op, id, { RW_URL = aof.url, RW_SECONDS = 16, RW_GAP = 0.2 })) end
    socket.sleep(7)
    local before = tonumber(aof.cli("HGET", rkey, "v"))
    aof.restart()
    local after = tonumber(aof.cli("HGET", rkey, "v")) or 0
    assert.is_true(after >= before, ("version %s after the restart, %s before"):format(after, before))
    local outs = finish(workers, 40)
    local total_ok = 0
    for i, out in ipairs(outs) do
      local okn, fail = out:match("ok=(%d+) fail=(%d+)")
      assert.equal("0", fail, "worker " .. i .. ": " .. out)
      total_ok = total_ok + tonumber(okn)
    end
    local reqs, errs = token_summary(op)
    assert.same({}, errs)
    local used = {}
    for _, q in ipairs(reqs) do
      assert.is_nil(used[q.refresh_token_sha256], "a refresh token was used twice (a rolled-back record)")
      used[q.refresh_token_sha256] = true
    end
    assert.is_true(#reqs >= 6, #reqs .. " token requests in 16 s")
    assert.is_true(tonumber(aof.cli("HGET", rkey, "v")) > after)
    assert.equal(total_ok, op.stats().api.ok)
  end)
end)
