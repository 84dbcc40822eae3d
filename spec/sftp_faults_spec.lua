-- SFTP against a real OpenSSH sshd (spec/peers/sshd.lua) that stops
-- answering or dies in the middle of a session: every call returns within
-- the session timeout plus BOUND with a documented code, keeps the old
-- file, and a broken session closes without waiting again.
--
-- The server is stalled by stopping (SIGSTOP, by PID) the sshd processes of
-- this spec's connection, and killed with SIGKILL the same way.
local helpers = require "helpers"
local socket = require "socket"
local connkit = require "connkit"
local q = helpers.shell_quote

local TIMEOUT = 1   -- the session timeout of these specs (seconds)
local BOUND = 0.5   -- what a call may take beyond it

local info, work, source, frozen

local function remote(name) return info.dir .. "/" .. name end

-- The per-connection sshd processes (children of the peer's sshd).
local function sshd_children() return info.connections() end

-- Sends `sig` to the sshd processes of connections made since `before`.
local function signal_since(before, sig) return info.signal_connections(before, sig) end

local function connect()
  local before = sshd_children()
  local acct = connkit.integration { name = "F", key = "f", auth = "sftp",
    sftp = { host = info.host, port = info.port, host_key = info.host_keys["ssh-ed25519"].fingerprint,
             timeout = 10 }, -- a loaded machine may be slow to log in
  }:account { credentials = { username = info.user, private_key = info.keys.ed25519.path } }
  local s = assert(acct:sftp())
  s:set_timeout(TIMEOUT)
  return s, before
end

-- Runs fn() once and returns the seconds it took and its first two results.
local function timed(fn)
  local t0 = socket.gettime()
  local a, b = fn()
  return socket.gettime() - t0, a, b
end

local function assert_stalled(took, v, err, what)
  assert.is_nil(v, what .. " returned a value")
  assert.equals("timeout", err.code, what .. ": " .. tostring(err))
  assert.is_true(took >= TIMEOUT - 0.1 and took < TIMEOUT + BOUND,
    ("%s took %.3f s (timeout %g s + %g s)"):format(what, took, TIMEOUT, BOUND))
end

setup(function()
  info = helpers.peer("sshd")
  work = helpers.tmpdir("sftp-faults")
  source = work .. "/source"
  local block = {}
  for i = 1, 4096 do block[i] = ("%08x"):format(i * 2654435761 % 4294967296) end
  helpers.write_file(source, table.concat(block):rep(256)) -- 8 MiB
  assert(helpers.run("cp " .. q(source) .. " " .. q(remote("faults-source")) .. " && chmod 644 "
    .. q(remote("faults-source"))))
end)

teardown(function()
  if work then helpers.execute("rm -rf " .. q(work)) end
end)

after_each(function()
  if frozen then helpers.execute("kill -CONT " .. table.concat(frozen, " ") .. " 2>/dev/null") end
  frozen = nil
end)

describe("SFTP on a server that stops answering (SIGSTOP)", function()
  it("get returns within timeout + bound and keeps the old target", function()
    local s, before = connect()
    local target = work .. "/get-target"
    helpers.write_file(target, "old content")
    local t0
    local n, err = s:get(remote("faults-source"), target, { chunk_size = 65536, progress = function()
      if not t0 then frozen = signal_since(before, "STOP"); t0 = socket.gettime() end
    end })
    assert_stalled(socket.gettime() - t0, n, err, "get")
    assert.equals("old content", helpers.read_file(target))
    assert.is_false(s:is_open())
    local took = timed(function() return s:close() end)
    assert.is_true(took < 0.2, "close of the broken session took " .. took)
  end)

  it("put returns within timeout + bound and keeps the old target", function()
    local s, before = connect()
    local target = remote("put-target")
    helpers.write_file(target, "old content")
    local t0
    local n, err = s:put(source, target, { chunk_size = 65536, progress = function()
      if not t0 then frozen = signal_since(before, "STOP"); t0 = socket.gettime() end
    end })
    assert_stalled(socket.gettime() - t0, n, err, "put")
    assert.equals("old content", helpers.read_file(target))
    s:close()
  end)

  it("file read returns within timeout + bound", function()
    local s, before = connect()
    local f = assert(s:open(remote("faults-source"), "r"))
    assert.equals(16, #f:read(16))
    frozen = signal_since(before, "STOP")
    local took, v, err = timed(function() return f:read("a") end)
    assert_stalled(took, v, err, "read")
    took = timed(function() return f:close() end)
    assert.is_true(took < 0.2, "close of the file took " .. took)
    s:close()
  end)

  it("file write returns within timeout + bound", function()
    local s, before = connect()
    local f = assert(s:open(remote("write-target"), "w"))
    frozen = signal_since(before, "STOP")
    local took, v, err = timed(function() return f:write(("x"):rep(4 * 1024 * 1024)) end)
    assert_stalled(took, v, err, "write")
    took = timed(function() return f:close() end)
    assert.is_true(took < 0.2, "close of the file took " .. took)
    s:close()
  end)

  it("file close (buffered data) returns within timeout + bound", function()
    local s, before = connect()
    local f = assert(s:open(remote("close-target"), "w"))
    assert(f:write("buffered"))
    frozen = signal_since(before, "STOP")
    local took, v, err = timed(function() return f:close() end)
    assert_stalled(took, v, err, "close")
    assert.is_false(s:is_open())
    s:close()
  end)

  it("file close (nothing buffered) returns within timeout + bound", function()
    local s, before = connect()
    local f = assert(s:open(remote("faults-source"), "r"))
    frozen = signal_since(before, "STOP")
    local took = timed(function() return f:close() end)
    assert.is_true(took < TIMEOUT + BOUND, ("close took %.3f s"):format(took))
    assert.is_false(s:is_open())
    s:close()
  end)

  it("session close with open files returns within timeout + bound", function()
    local s, before = connect()
    local files = {}
    for i = 1, 3 do files[i] = assert(s:open(remote("faults-source"), "r")) end
    local iter = assert(s:dir(info.dir))
    frozen = signal_since(before, "STOP")
    local took = timed(function() return s:close() end)
    assert.is_true(took < TIMEOUT + BOUND, ("session close took %.3f s"):format(took))
    assert.has_error(function() files[1]:read(1) end, "attempt to use a closed SFTP file")
    assert.has_error(function() iter() end)
  end)

  it("session close with nothing open returns within timeout + bound", function()
    local s, before = connect()
    frozen = signal_since(before, "STOP")
    local took = timed(function() return s:close() end)
    assert.is_true(took < TIMEOUT + BOUND, ("session close took %.3f s"):format(took))
  end)

  it("rename with overwrite returns within timeout + bound", function()
    local s, before = connect()
    helpers.write_file(remote("ren-from"), "new")
    helpers.write_file(remote("ren-to"), "old")
    frozen = signal_since(before, "STOP")
    local took, v, err = timed(function() return s:rename(remote("ren-from"), remote("ren-to"), { overwrite = true }) end)
    assert_stalled(took, v, err, "rename")
    helpers.execute("kill -CONT " .. table.concat(frozen, " "))
    frozen = nil
    socket.sleep(0.2)
    assert.equals("old", helpers.read_file(remote("ren-to")))
    s:close()
  end)
end)

describe("SFTP posix-rename on a server that stops answering (SIGSTOP)", function()
  -- the atomic replace of rename{overwrite} and put runs on a second SFTP
  -- channel (csrc/sftp_ext.c): opening it and using it are bounded too
  for _, opened in ipairs({ false, true }) do
    it("returns within timeout + bound (extension channel " .. (opened and "open" or "not yet open") .. ")",
      function()
        local s, before = connect()
        helpers.write_file(remote("px-from"), "new")
        helpers.write_file(remote("px-to"), "old")
        if opened then
          helpers.write_file(remote("px-warm"), "w")
          assert(s:rename(remote("px-warm"), remote("px-to"), { overwrite = true }))
          helpers.write_file(remote("px-to"), "old")
        end
        frozen = signal_since(before, "STOP")
        local took, v, code = timed(function() return s._s:posix_rename(remote("px-from"), remote("px-to")) end)
        assert.is_nil(v)
        assert.equals("timeout", code)
        assert.is_true(took >= TIMEOUT - 0.1 and took < TIMEOUT + BOUND, ("posix-rename took %.3f s"):format(took))
        assert.is_false(s:is_open())
        took = timed(function() return s:close() end)
        assert.is_true(took < 0.2, "close took " .. took)
      end)
  end
end)

describe("SFTP on a server killed mid-transfer (SIGKILL)", function()
  for _, mode in ipairs({ "get", "put" }) do
    it(mode .. " fails at once with code connection and keeps the old target", function()
      local s, before = connect()
      local target = mode == "get" and work .. "/killed-get" or remote("killed-put")
      helpers.write_file(target, "old content")
      local t0
      local opts = { chunk_size = 65536, progress = function()
        if not t0 then signal_since(before, "KILL"); t0 = socket.gettime() end
      end }
      local n, err
      if mode == "get" then n, err = s:get(remote("faults-source"), target, opts)
      else n, err = s:put(source, target, opts) end
      local took = socket.gettime() - t0
      assert.is_nil(n)
      assert.equals("connection", err.code, tostring(err))
      assert.is_true(took < BOUND, ("%s took %.3f s"):format(mode, took))
      assert.equals("old content", helpers.read_file(target))
      assert.is_false(s:is_open())
      took = timed(function() return s:close() end)
      assert.is_true(took < 0.2, "close took " .. took)
    end)
  end
end)
