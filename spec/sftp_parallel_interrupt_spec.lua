-- Ctrl-C during a parallel SFTP get (parallel = 2) in the stock
-- interpreter: the child ends within half a second with "interrupted!" while
-- the server (every connection of the transfer stopped by SIGSTOP) does not
-- answer; the .part file keeps its marker (it may have gaps), so a resume
-- starts over and the file arrives identical.
local helpers = require "helpers"
local socket = require "socket"
local connkit = require "connkit"
local q = helpers.shell_quote

local LIMIT = 0.5
local SIZE = 2 * 36 * 1024 * 1024 + 99

local info, dir, proc, frozen

local function exited(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return true end
  local state = (f:read("*a") or ""):match("%) (%a)")
  f:close()
  return state == nil or state == "Z" or state == "X"
end

local function output() return helpers.read_file(proc.log) or "" end

local function wait_for(pattern)
  local deadline = socket.gettime() + 20
  repeat
    if output():find(pattern) then return end
    if exited(proc.pid) then break end
    socket.sleep(0.01)
  until socket.gettime() > deadline
  error(("%q never appeared:\n%s"):format(pattern, output()), 2)
end

local CHILD = [[
local connkit = require "connkit"
local core = require "connkit.core"
local host, port, user, key, fp, remote, localpath, go = ...
local function say(s) io.stdout:write(s, "\n") io.stdout:flush() end
local acct = connkit.integration { name = "S", key = "s", auth = "sftp",
  sftp = { host = host, port = tonumber(port), host_key = fp, timeout = 20 } }
  :account { credentials = { username = user, private_key = key } }
local s = assert(acct:sftp())
local paused = false
local res = s:get(remote, localpath, { parallel = 2, chunk_size = 65536, progress = function()
  if paused then return end
  paused = true
  say("transferring")
  while not io.open(go) do core.sleep(0.01) end
  say("started")
end })
say("finished " .. tostring(res))
]]

setup(function()
  info = helpers.peer("sshd")
  dir = helpers.tmpdir("sftp-parallel-interrupt")
end)

teardown(function()
  if frozen then helpers.execute("kill -CONT " .. table.concat(frozen, " ") .. " 2>/dev/null") end
  if proc then helpers.stop(proc) end
  if dir then helpers.execute("rm -rf " .. q(dir)) end
end)

describe("Ctrl-C during a parallel SFTP get", function()
  it("ends the interpreter within half a second; the marker makes resume start over", function()
    local src = dir .. "/src.bin"
    assert(helpers.run(("head -c %d /dev/urandom > %s"):format(SIZE, q(src))))
    local remote = info.dir .. "/pint-src.bin"
    assert(helpers.run(("cp %s %s && chmod 644 %s"):format(q(src), q(remote), q(remote))))
    local target, go = dir .. "/got.bin", dir .. "/go"
    local script = dir .. "/child.lua"
    helpers.write_file(script, CHILD)
    local before = info.connections()
    local words = { helpers.lua, q(script) }
    for _, a in ipairs({ info.host, tostring(info.port), info.user, info.keys.ed25519.path,
      info.host_keys["ssh-ed25519"].fingerprint, remote, target, go }) do words[#words + 1] = q(a) end
    proc = helpers.spawn("sftp-parallel-int", table.concat(words, " "), { env = helpers.child_env() })
    wait_for("transferring\n")
    frozen = info.signal_connections(before, "STOP") -- both connections of the child
    assert.is_true(#frozen >= 4) -- two connections, each a monitor and its child
    helpers.write_file(go, "")
    wait_for("started\n")
    socket.sleep(0.3) -- well inside the wait
    assert.is_false(exited(proc.pid), output())
    local t0 = socket.gettime()
    assert(helpers.execute("kill -INT " .. proc.pid))
    while not exited(proc.pid) and socket.gettime() - t0 < 15 do socket.sleep(0.005) end
    local took = socket.gettime() - t0
    assert.is_true(took < LIMIT, ("took %.3f s:\n%s"):format(took, output()))
    assert.matches("interrupted!", output(), 1, true)
    assert.not_matches("finished", output(), 1, true)
    helpers.execute("kill -CONT " .. table.concat(frozen, " ") .. " 2>/dev/null")
    frozen = nil
    assert.is_true(helpers.exists(target .. ".part"))
    assert.is_true(helpers.exists(target .. ".part.parallel")) -- it may have gaps
    assert.is_false(helpers.exists(target))
    local s = assert(connkit.integration { name = "R", key = "r", auth = "sftp",
      sftp = { host = info.host, port = info.port, host_key = info.host_keys["ssh-ed25519"].fingerprint, timeout = 10 } }
      :account { credentials = { username = info.user, private_key = info.keys.ed25519.path } }:sftp())
    assert.equals(SIZE, s:get(remote, target, { parallel = 2, resume = true })) -- from the start
    assert.equals(helpers.file_sha256(src), helpers.file_sha256(target))
    assert.is_false(helpers.exists(target .. ".part.parallel"))
    s:close()
  end)
end)
