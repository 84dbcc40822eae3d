-- Replacing a file over SFTP (rename{overwrite} and put onto an existing
-- file) against a real OpenSSH sshd: with posix-rename@openssh.com the
-- target is never missing. A reader process on the server's side (the
-- peer runs on this machine, so its files are local) opens and reads the
-- target in a tight loop during the overwrites and counts every time it
-- is missing or not a whole version. A server with one session channel per
-- connection (MaxSessions 1) gets the fallback, remove then rename.
local helpers = require "helpers"
local socket = require "socket"
local connkit = require "connkit"
local q = helpers.shell_quote

local SIZE = 4096 -- every version of the target has this many bytes
local ROUNDS = 150

local info, work

local function remote(name) return info.dir .. "/" .. name end

local function version(i)
  local head = ("version %06d\n"):format(i)
  return head .. ("."):rep(SIZE - #head)
end

local function connect(port)
  local acct = connkit.integration { name = "R", key = "r", auth = "sftp",
    sftp = { host = info.host, port = port or info.port, host_key = info.host_keys["ssh-ed25519"].fingerprint,
             timeout = 10 },
  }:account { credentials = { username = info.user, private_key = info.keys.ed25519.path } }
  return assert(acct:sftp())
end

-- Reads `target` in a loop until `stop` exists; prints reads, missing, torn.
local READER = [[
local target, stop, size = arg[1], arg[2], tonumber(arg[3])
local reads, missing, torn = 0, 0, 0
while true do
  for _ = 1, 200 do
    local f = io.open(target, "rb")
    if not f then
      missing = missing + 1
    else
      local data = f:read("*a")
      f:close()
      if #data ~= size or not data:find("^version %d+\n") then torn = torn + 1 end
    end
    reads = reads + 1
  end
  local s = io.open(stop, "r")
  if s then s:close() break end
end
io.stdout:write(("reads=%d missing=%d torn=%d\n"):format(reads, missing, torn))
]]

-- Runs overwrite(i) for i = 1..ROUNDS while the reader watches `target`;
-- returns reads, missing, torn.
local function watch(target, overwrite)
  local dir = helpers.tmpdir("sftp-rename")
  helpers.write_file(dir .. "/reader.lua", READER)
  local stop = dir .. "/stop"
  local proc = helpers.spawn("reader", table.concat({ helpers.lua, q(dir .. "/reader.lua"), q(target), q(stop),
    tostring(SIZE) }, " "))
  local ok, err = pcall(function()
    for i = 1, ROUNDS do overwrite(i) end
  end)
  helpers.write_file(stop, "")
  local out
  for _ = 1, 200 do
    out = helpers.read_file(proc.log) or ""
    if out:find("reads=") then break end
    socket.sleep(0.05)
  end
  helpers.stop(proc)
  assert(ok, err)
  local reads, missing, torn = out:match("reads=(%d+) missing=(%d+) torn=(%d+)")
  assert(reads, "reader said: " .. out)
  return tonumber(reads), tonumber(missing), tonumber(torn)
end

setup(function()
  info = helpers.peer("sshd")
  work = helpers.tmpdir("sftp-rename-spec")
end)

teardown(function()
  if work then helpers.execute("rm -rf " .. q(work)) end
end)

describe("SFTP overwrite on OpenSSH (posix-rename@openssh.com)", function()
  it("rename{overwrite}: the target is never missing, always a whole version", function()
    local s = connect()
    local target = remote("atomic-rename")
    helpers.write_file(target, version(0))
    local reads, missing, torn = watch(target, function(i)
      local from = remote("atomic-rename.new")
      local f = assert(s:open(from, "w"))
      assert(f:write(version(i)))
      assert(f:close())
      assert(s:rename(from, target, { overwrite = true }))
    end)
    -- it went through the extension (a server without it falls back)
    assert.is_true(s._s:posix_rename(remote("atomic-rename"), remote("atomic-rename.moved")))
    assert.equals(version(ROUNDS), helpers.read_file(remote("atomic-rename.moved")))
    assert(s:rename(remote("atomic-rename.moved"), target))
    s:close()
    assert.equals(version(ROUNDS), helpers.read_file(target))
    assert.is_nil(helpers.read_file(remote("atomic-rename.new")))
    assert.is_true(reads > ROUNDS, "the reader read " .. reads .. " times")
    assert.equals(0, missing, ("missing in %d of %d reads"):format(missing, reads))
    assert.equals(0, torn)
  end)

  it("put over an existing file: the target is never missing, always a whole version", function()
    local s = connect()
    local target = remote("atomic-put")
    helpers.write_file(target, version(0))
    local reads, missing, torn = watch(target, function(i)
      local path = work .. "/put-source"
      helpers.write_file(path, version(i))
      assert.equals(SIZE, assert(s:put(path, target)))
    end)
    s:close()
    assert.equals(version(ROUNDS), helpers.read_file(target))
    assert.is_nil(helpers.read_file(target .. ".part"))
    assert.is_true(reads > ROUNDS, "the reader read " .. reads .. " times")
    assert.equals(0, missing, ("missing in %d of %d reads"):format(missing, reads))
    assert.equals(0, torn)
  end)

  it("keeps the error codes: a directory target, a missing source", function()
    local s = connect()
    assert(s:mkdir(remote("rename-dir"), { parents = true }))
    helpers.write_file(remote("rename-src"), "x")
    local ok, err = s:rename(remote("rename-src"), remote("rename-dir"), { overwrite = true })
    assert.is_nil(ok)
    assert.equals("failure", err.code)
    assert.equals("x", helpers.read_file(remote("rename-src")))
    ok, err = s:rename(remote("no-such-source"), remote("rename-src"), { overwrite = true })
    assert.is_nil(ok)
    assert.equals("no_such_file", err.code)
    assert.equals("x", helpers.read_file(remote("rename-src")))
    -- without overwrite an existing target is still refused
    helpers.write_file(remote("rename-other"), "y")
    ok, err = s:rename(remote("rename-other"), remote("rename-src"))
    assert.is_nil(ok)
    assert.equals("failure", err.code)
    assert.equals("x", helpers.read_file(remote("rename-src")))
    s:close()
  end)
end)

describe("SFTP overwrite without posix-rename (MaxSessions 1)", function()
  it("replaces the target by remove, then rename", function()
    local s = connect(info.port_one_session)
    -- the second SFTP channel is refused: posix-rename cannot be sent
    helpers.write_file(remote("fallback-probe"), "p")
    assert.is_false(s._s:posix_rename(remote("fallback-probe"), remote("fallback-probe2")))
    assert.equals("p", helpers.read_file(remote("fallback-probe")))
    local target = remote("fallback-target")
    helpers.write_file(target, "old")
    helpers.write_file(remote("fallback-from"), "new")
    assert(s:rename(remote("fallback-from"), target, { overwrite = true }))
    assert.equals("new", helpers.read_file(target))
    assert.is_nil(helpers.read_file(remote("fallback-from")))
    local src = work .. "/fallback-put"
    helpers.write_file(src, "newer")
    assert.equals(5, assert(s:put(src, target)))
    assert.equals("newer", helpers.read_file(target))
    assert.is_true(s:is_open())
    s:close()
  end)
end)
