-- Fault matrix of SFTP get, put and read against OpenSSH's sshd
-- (spec/peers/sshd.lua) behind the fault proxy: the session is opened
-- through a clean listener, then the fault is switched on (both
-- directions) for the transfer. A fault that stops progress ends the call
-- within the SFTP timeout (faults.TIMEOUT, the limit of each step) plus faults.BOUND
-- with a documented code; the old file is kept (local target of get, remote
-- target of put); a new session through the same listener works. Plus the
-- session's sshd processes stopped by SIGSTOP and killed mid-transfer.
local connkit = require "connkit"
local helpers = require "helpers"
local faults = require "support.faults"
local q = helpers.shell_quote

local TIMEOUT = faults.TIMEOUT
local SIZE = 16 * 1024 -- small: a sliced transfer (one write per byte) must fit a step

local info, fp, work
local n = 0

-- Logs in with the password where the peer has one (root), else a key.
local function account(port)
  n = n + 1
  local creds = { username = info.user, password = info.password }
  if not info.password then creds.private_key = info.keys.ed25519.path end
  faults.secret(info.password)
  local acct = connkit.integration {
    name = "Fault SFTP " .. n, key = "faultsftp" .. n, auth = "sftp",
    parameters = { sshport = { required = true } },
    sftp = { host = "127.0.0.1", port = "{sshport}", timeout = TIMEOUT,
      host_key = info.host_keys["ssh-ed25519"].fingerprint },
  }:account { parameters = { sshport = tostring(port) }, credentials = creds }
  faults.message(acct)
  return acct
end

-- A session connected with room to spare (a busy machine), then held to
-- TIMEOUT per step (or step_timeout).
local function session(acct, step_timeout)
  local s = assert(acct:sftp { timeout = 10 })
  s:set_timeout(step_timeout or TIMEOUT)
  return s
end

-- The file at path holds `want` (no binary dump when it does not).
local function assert_file(path, want)
  local got = helpers.read_file(path)
  assert(got == want, ("%s holds %s bytes, not the %d expected (%s)"):format(path,
    got and #got or "no", #want, want == source and "the source" or want))
end

local function remote(name) return info.dir .. "/" .. name end

local source -- SIZE random bytes, on both sides as src.bin

local EXPECT = {
  latency = { "timeout" }, bandwidth = { "timeout" }, stall = { "timeout" },
  stall_headers = { "timeout" }, drip = { "timeout" },
  reset = { "connection" }, cut = { "connection" }, cut_headers = { "connection" },
}

-- get: the local target holds "old local" before; put: the remote one
-- "old remote"; read: a file opened before the fault. arm() switches the
-- fault on just before the timed call.
local CALLS = {
  { "get", function(s, tag, arm)
    local target = work .. "/get-" .. tag
    helpers.write_file(target, "old local")
    arm()
    local elapsed, r, err = faults.timed(s.get, s, remote("src.bin"), target)
    return elapsed, r, err, function(ok) assert_file(target, ok and source or "old local") end
  end },
  { "put", function(s, tag, arm)
    local target = remote("put-" .. tag)
    helpers.write_file(target, "old remote")
    helpers.execute("chown " .. q(info.user) .. " " .. q(target))
    arm()
    local elapsed, r, err = faults.timed(s.put, s, work .. "/src.bin", target)
    return elapsed, r, err, function(ok) assert_file(target, ok and source or "old remote") end
  end },
  { "read", function(s, _, arm)
    local f = assert(s:open(remote("src.bin"), "r"))
    arm()
    local elapsed, r, err = faults.timed(f.read, f, "a")
    pcall(f.close, f)
    return elapsed, r, err, function(ok) if ok then assert_file(remote("src.bin"), r) end end
  end },
}

setup(function()
  info = helpers.peer("sshd")
  fp = helpers.peer("faultproxy")
  work = helpers.tmpdir("fault-sftp")
  local ok, out = helpers.run(("head -c %d /dev/urandom > %s && cp %s %s && chmod 644 %s")
    :format(SIZE, q(work .. "/src.bin"), q(work .. "/src.bin"), q(remote("src.bin")), q(remote("src.bin"))))
  assert(ok, out)
  source = helpers.read_file(work .. "/src.bin")
end)

teardown(function()
  if work then helpers.execute("rm -rf " .. q(work)) end
  faults.write("sftp", "SFTP get/put/read x faults (sshd behind the fault proxy; timeout " .. TIMEOUT .. " s per step)")
end)

for _, c in ipairs(CALLS) do
  local call, run = c[1], c[2]
  describe("fault matrix: sftp " .. call, function()
    for _, f in ipairs(faults.FAULTS) do
      local fault, kind, arg = f[1], f[2], f[3]
      local whole = faults.HARMLESS[fault]
      -- (stall_headers waits for an HTTP header block: no such thing in SSH)
      if fault ~= "stall_headers" then it(fault .. (whole and ": goes through" or ": fails in time, the old file kept"), function()
        local port = fp.listen(info.port, "none")
        local acct = account(port)
        -- a harmless fault must let the call through, however slowly a busy
        -- machine moves 16 KiB one byte at a time: its steps get 5 s (one
        -- rename reply once took 0.5 s under load); the timing bound is for
        -- the faults that must fail
        local s = session(acct, whole and 5 or nil)
        local elapsed, r, err, check_file = run(s, call .. "-" .. fault,
          function() fp.set(port, kind, arg, "both") end)
        faults.record("sftp " .. call, fault, elapsed, err)
        faults.message(err)
        pcall(s.close, s)
        fp.set(port, "none")
        -- a new session through the same listener works
        local s2 = session(acct)
        assert(s2:stat(remote("src.bin")))
        s2:close()
        if whole then
          assert(r, err and err.message)
          check_file(true)
          return
        end
        check_file(false)
        -- SFTP's timeout is per step (no answer within it, as README says):
        -- under a bandwidth limit a step can deliver data just inside its
        -- limit before the next one times out, so that cell has two steps
        local deadline = fault == "bandwidth" and 2 * TIMEOUT or TIMEOUT
        faults.assert_failure("sftp " .. call .. " x " .. fault, elapsed, deadline, r, err, EXPECT[fault])
      end) end
    end
  end)
end

describe("fault matrix: sftp, sshd stopped and killed", function()
  -- The sshd processes serving connections (children of the main sshd and
  -- theirs), all started by this suite.
  local function session_pids()
    local pids, seen = {}, {}
    local function walk(pid)
      local _, out = helpers.run("pgrep -P " .. pid)
      for p in out:gmatch("%d+") do
        if not seen[p] then seen[p] = true; pids[#pids + 1] = p; walk(p) end
      end
    end
    walk(info.pid)
    return pids
  end
  local function signal(sig, pids)
    for _, p in ipairs(pids) do helpers.execute("kill -" .. sig .. " " .. p .. " 2>/dev/null") end
  end
  local function new_pids(before)
    local had, out = {}, {}
    for _, p in ipairs(before) do had[p] = true end
    for _, p in ipairs(session_pids()) do if not had[p] then out[#out + 1] = p end end
    assert(#out > 0, "no sshd process serves the session")
    return out
  end

  for _, c in ipairs(CALLS) do
    local call, run = c[1], c[2]
    it(call .. ": the session's sshd stopped by SIGSTOP: fails in time, the old file kept", function()
      local before = session_pids()
      local s = session(account(info.port))
      local pids = new_pids(before)
      local ok, elapsed, r, err, check_file = pcall(run, s, call .. "-sigstop",
        function() signal("STOP", pids) end)
      signal("CONT", pids)
      assert(ok, elapsed)
      faults.record("sftp " .. call, "SIGSTOP", elapsed, err)
      faults.message(err)
      pcall(s.close, s)
      check_file(false)
      faults.assert_failure("sftp " .. call .. " x SIGSTOP", elapsed, TIMEOUT, r, err, { "timeout" })
    end)
  end

  for _, call in ipairs({ "get", "put" }) do
    it(call .. ": the session's sshd killed mid-transfer: connection, the old file kept", function()
      local before = session_pids()
      local acct = account(info.port)
      local s = session(acct)
      local pids = new_pids(before)
      local killed = false
      local opts = { chunk_size = 4096, progress = function()
        if not killed then killed = true; signal("KILL", pids) end
      end }
      local target = call == "get" and work .. "/killed-get" or remote("killed-put")
      helpers.write_file(target, "old file")
      helpers.execute("chown " .. q(info.user) .. " " .. q(target))
      local elapsed, r, err = faults.timed(function()
        if call == "get" then return s:get(remote("src.bin"), target, opts) end
        return s:put(work .. "/src.bin", target, opts)
      end)
      faults.record("sftp " .. call, "sshd killed", elapsed, err)
      faults.message(err)
      pcall(s.close, s)
      assert.is_true(killed)
      assert_file(target, "old file")
      faults.assert_failure("sftp " .. call .. " x killed", elapsed, TIMEOUT, r, err, { "connection", "timeout" })
      local s2 = session(acct) -- the main sshd still serves
      s2:close()
    end)
  end
end)

describe("fault matrix: secrets", function()
  it("no message of the run holds a secret or 4+ characters of one", function()
    assert.same({}, faults.leaks())
  end)
end)
