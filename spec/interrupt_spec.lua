-- Ctrl-C in the stock interpreter: a blocking request, connkit.all, a
-- handle's result() and an SFTP transfer stop within half a second with the
-- interpreter's "interrupted!" error, and leave the engine usable. Each case
-- runs a child interpreter ($CONNKIT_LUA) that the spec interrupts with
-- SIGINT by PID; the peers are httpbin (/delay/N answers after N seconds),
-- the scripted server (a slow POST, a 429 with Retry-After) and sshd, whose
-- processes for the child's connection the spec stops (SIGSTOP) in the
-- middle of a transfer.
local helpers = require "helpers"
local socket = require "socket"
local q = helpers.shell_quote

local LIMIT = 0.5 -- seconds from SIGINT to the end of the wait

local procs = {}

teardown(function()
  for _, p in ipairs(procs) do helpers.stop(p) end
end)

-- True once the process is gone (or a zombie nobody reaped yet).
local function exited(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return true end
  local stat = f:read("*a") or ""
  f:close()
  local state = stat:match("%) (%a)")
  return state == nil or state == "Z" or state == "X"
end

local PRELUDE = [[
local connkit = require "connkit"
local core = require "connkit.core"
local function say(...)
  local t = table.pack and table.pack(...) or { n = select("#", ...), ... }
  for i = 1, t.n do t[i] = tostring(t[i]) end
  io.stdout:write(table.concat(t, " ", 1, t.n), "\n")
  io.stdout:flush()
end
]]

-- Starts `lua script args...` with `code` as the script; returns the process.
local function child(name, code, ...)
  local dir = helpers.tmpdir("interrupt")
  local path = dir .. "/" .. name .. ".lua"
  helpers.write_file(path, PRELUDE .. code)
  local words = { helpers.lua, q(path) }
  for _, a in ipairs({ ... }) do words[#words + 1] = q(a) end
  local proc = helpers.spawn(name, table.concat(words, " "), { env = helpers.child_env() })
  procs[#procs + 1] = proc
  return proc
end

local function output(proc) return helpers.read_file(proc.log) or "" end

-- Waits until the child's output matches `pattern`; returns the output.
local function wait_for(proc, pattern, timeout)
  local deadline = socket.gettime() + (timeout or 15)
  repeat
    local out = output(proc)
    if out:find(pattern) then return out end
    if exited(proc.pid) then break end
    socket.sleep(0.01)
  until socket.gettime() > deadline
  local out = output(proc)
  if out:find(pattern) then return out end
  error(("%s: %q never appeared in its output:\n%s"):format(proc.name, pattern, out), 2)
end

-- Once the child has been waiting a while, sends it SIGINT; returns the
-- time it was sent.
local function interrupt(proc)
  wait_for(proc, "started\n")
  socket.sleep(0.4) -- well inside the wait
  assert.is_false(exited(proc.pid), "ended before the interrupt:\n" .. output(proc))
  local t0 = socket.gettime()
  assert(helpers.execute("kill -INT " .. proc.pid))
  return t0
end

-- Interrupts the child and returns the seconds until it exited and its output.
local function interrupt_and_wait_exit(proc)
  local t0 = interrupt(proc)
  while not exited(proc.pid) and socket.gettime() - t0 < 15 do socket.sleep(0.005) end
  return socket.gettime() - t0, output(proc)
end

describe("Ctrl-C during an HTTP wait", function()
  local hb, sc

  setup(function()
    hb = helpers.peer("httpbin")
    sc = helpers.peer("scripted")
  end)

  local UNCAUGHT = [[
local url, what, scripted = ...
local acct = connkit.integration { name = "Slow", key = "slow", auth = "none" }:account {}
local reqs = {}
for i = 1, 3 do reqs[i] = acct:prepare { url = url .. "/delay/10?n=" .. i } end
say("started")
if what == "get" then
  local res, err = acct:get(url .. "/delay/10")
  say("finished", res and res.status, err and err.code)
elseif what == "all" then
  local out = connkit.all(reqs, { concurrency = 2 })
  say("finished", #out)
else -- waiting 10 s for a retry: a 429 with Retry-After: 10
  local res, err = acct:request { url = scripted .. "/ratelimit?key=" .. os.time() .. "&fail=3&retry_after=10",
    retry = { max = 2, statuses = { 429 }, max_wait = 30 } }
  say("finished", res and res.status, err and err.code)
end
]]

  for _, what in ipairs({ "get", "all", "retry" }) do
    it("ends the interpreter within half a second (" .. what .. ")", function()
      local proc = child("uncaught-" .. what, UNCAUGHT, hb.url, what, sc.url)
      local took, out = interrupt_and_wait_exit(proc)
      assert.is_true(took < LIMIT, ("took %.3f s:\n%s"):format(took, out))
      assert.matches("interrupted!", out, 1, true)
      assert.not_matches("finished", out, 1, true)
    end)
  end

  -- The interruption caught with pcall, then the same engine used again.
  local CAUGHT = [[
local url, what, scripted = ...
local acct = connkit.integration { name = "Slow", key = "slow", auth = "none" }:account {}
local engine = core.engine()
local started -- a handle of req:start(): no blocking call may touch it
local calls = {
  get = function() return acct:get(url .. "/delay/10") end,
  send = function() return acct:prepare { method = "POST", url = scripted .. "/delay?s=10", body = "x" }:send() end,
  all = function()
    local reqs = {}
    for i = 1, 5 do reqs[i] = acct:prepare { url = url .. "/delay/10?n=" .. i } end
    return connkit.all(reqs, { concurrency = 3 })
  end,
  result = function() return acct:prepare { url = url .. "/delay/10" }:start():result() end,
  coroutine = function()
    return coroutine.wrap(function()
      local res, err = acct:get(url .. "/delay/10")
      say("the coroutine went on", res, err)
    end)()
  end,
  beside = function()
    started = acct:prepare { url = url .. "/delay/2" }:start()
    return acct:get(url .. "/delay/10")
  end,
}
say("started")
local ok, err = pcall(calls[what])
say("caught", ok, err)
say("pending", engine:pending())
if started then
  local res = assert(started:result())
  say("started handle", res.status, res:json().url)
  say("pending", engine:pending())
end
local res = assert(acct:get(url .. "/anything/after-" .. what, { headers = { ["X-After"] = "interrupt" } }))
local got = res:json()
say("after", res.status, got.method, got.url, got.headers["X-After"])
say("pending", engine:pending())
]]

  local function caught(what)
    local proc = child("caught-" .. what, CAUGHT, hb.url, what, sc.url)
    local t0 = interrupt(proc)
    wait_for(proc, "caught[^\n]*\npending %d+\n")
    local took = socket.gettime() - t0
    local out = wait_for(proc, "after[^\n]*\npending %d+\n")
    assert.is_true(took < LIMIT, ("took %.3f s:\n%s"):format(took, out))
    assert.matches("caught false [^\n]*interrupted!\n", out)
    -- the peer got the request made after the interruption
    assert.matches("after 200 GET " .. hb.url:gsub("%p", "%%%0") .. "/anything/after%-" .. what .. " interrupt\n", out)
    return out
  end

  for _, what in ipairs({ "get", "send", "all" }) do
    it("leaves nothing in flight and the engine usable (" .. what .. ")", function()
      local out = caught(what)
      assert.matches("caught[^\n]*\npending 0\nafter[^\n]*\npending 0\n$", out)
      if what == "send" then -- a POST, on a handle reset afterwards
        local got = assert(sc.last("/delay"))
        assert.equals("POST", got.method)
        assert.equals("x", got.body)
      end
    end)
  end

  -- (PUC Lua 5.1 cannot tell C which thread is the main one, where lua.c
  -- sets its hook: there a blocking call in a coroutine runs to its end)
  local puc51 = _VERSION == "Lua 5.1" and not rawget(_G, "jit")
  if not puc51 then
    it("gives way inside a coroutine, with one error", function()
      local out = caught("coroutine")
      assert.not_matches("went on", out, 1, true)
      assert.matches("caught[^\n]*\npending 0\nafter[^\n]*\npending 0\n$", out)
    end)
  end

  it("stops waiting in a handle's result() and lets its transfer run on", function()
    local out = caught("result")
    -- still in flight once caught; the later request drove it on
    assert.matches("caught[^\n]*\npending 1\n", out)
  end)

  it("cancels only the blocking request, not a started handle beside it", function()
    local out = caught("beside")
    assert.matches("caught[^\n]*\npending 1\nstarted handle 200 "
      .. hb.url:gsub("%p", "%%%0") .. "/delay/2\npending 0\n", out)
  end)
end)

describe("Ctrl-C during an SFTP transfer", function()
  local info, dir, frozen, source

  setup(function()
    info = helpers.peer("sshd")
    dir = helpers.tmpdir("interrupt-sftp")
    source = dir .. "/source"
    local block = {}
    for i = 1, 4096 do block[i] = ("%08x"):format(i * 2654435761 % 4294967296) end
    helpers.write_file(source, table.concat(block):rep(256)) -- 8 MiB
    local ok, out = helpers.run("cp " .. q(source) .. " " .. q(info.dir .. "/interrupt-source")
      .. " && chmod 644 " .. q(info.dir .. "/interrupt-source"))
    assert(ok, out)
  end)

  after_each(function()
    if frozen then helpers.execute("kill -CONT " .. table.concat(frozen, " ") .. " 2>/dev/null") end
    frozen = nil
  end)

  -- The per-connection sshd processes (children of the peer's sshd).
  local function sshd_children() return info.connections() end

  -- Stops the sshd processes of connections made since `before`: the
  -- server stops answering in the middle of the transfer.
  local function freeze_since(before)
    frozen = info.signal_connections(before, "STOP")
  end

  -- The transfer pauses in its first progress call until the spec has
  -- frozen the server and made the file `go`.
  local CONNECT = [[
local host, port, user, key, fp, mode, remote, localpath, go, again = ...
local integ = connkit.integration { name = "S", key = "s", auth = "sftp",
  sftp = { host = host, port = tonumber(port), host_key = fp, timeout = 20 } }
local acct = integ:account { credentials = { username = user, private_key = key } }
local s = assert(acct:sftp())
local paused = false
local function progress()
  if paused then return end
  paused = true
  say("transferring")
  while not io.open(go) do core.sleep(0.01) end
  say("started")
end
local opts = { progress = progress, chunk_size = 65536 }
local function transfer()
  if mode == "get" then return s:get(remote, localpath, opts) end
  return s:put(localpath, remote, opts)
end
]]
  local UNCAUGHT = CONNECT .. [[
say("finished", transfer())
]]
  -- caught: the interrupted session is closed; a new one transfers
  local CAUGHT = CONNECT .. [[
local ok, err = pcall(transfer)
say("caught", ok, err)
say("open", s:is_open())
s:close()
local s2 = assert(acct:sftp())
say("again", assert(s2:get(again, localpath .. ".again")))
s2:close()
]]

  -- Runs `code` for a transfer, freezes the server once it is under way,
  -- and interrupts the child; returns the process and the time of SIGINT.
  local function run(name, code, mode, remote, localpath, again)
    local before = sshd_children()
    local go = dir .. "/" .. name .. ".go"
    local proc = child(name, code, info.host, tostring(info.port), info.user, info.keys.ed25519.path,
      info.host_keys["ssh-ed25519"].fingerprint, mode, remote, localpath, go, again or "")
    wait_for(proc, "transferring\n")
    freeze_since(before)
    helpers.write_file(go, "")
    return proc, interrupt(proc)
  end

  local function exit_time(proc, t0)
    while not exited(proc.pid) and socket.gettime() - t0 < 15 do socket.sleep(0.005) end
    return socket.gettime() - t0, output(proc)
  end

  it("ends the interpreter within half a second (get)", function()
    local proc, t0 = run("sftp-get", UNCAUGHT, "get", info.dir .. "/interrupt-source", dir .. "/got")
    local took, out = exit_time(proc, t0)
    assert.is_true(took < LIMIT, ("took %.3f s:\n%s"):format(took, out))
    assert.matches("interrupted!", out, 1, true)
    assert.not_matches("finished", out, 1, true)
    -- what had arrived is kept for a resume: a part of the file
    local part = helpers.read_file(dir .. "/got.part")
    assert.is_true(#part >= 65536 and #part < 8 * 1024 * 1024, "part of " .. #part .. " bytes")
    assert.is_true(part == helpers.read_file(source):sub(1, #part))
  end)

  it("ends the interpreter within half a second (put)", function()
    local proc, t0 = run("sftp-put", UNCAUGHT, "put", info.dir .. "/interrupt-upload", source)
    local took, out = exit_time(proc, t0)
    assert.is_true(took < LIMIT, ("took %.3f s:\n%s"):format(took, out))
    assert.matches("interrupted!", out, 1, true)
    assert.not_matches("finished", out, 1, true)
    assert.is_nil(helpers.read_file(info.dir .. "/interrupt-upload")) -- never renamed into place
  end)

  for _, mode in ipairs({ "get", "put" }) do
    it("goes on after the server paused for several slices (" .. mode .. ")", function()
      local connkit = require "connkit"
      local before = sshd_children()
      local acct = connkit.integration { name = "S", key = "s", auth = "sftp",
        sftp = { host = info.host, port = info.port, host_key = info.host_keys["ssh-ed25519"].fingerprint, timeout = 5 },
      }:account { credentials = { username = info.user, private_key = info.keys.ed25519.path } }
      local s = assert(acct:sftp())
      local paused = false
      local opts = { chunk_size = 65536, progress = function()
        if paused then return end
        paused = true
        freeze_since(before) -- and thawed 0.6 s later, in the middle of the transfer
        procs[#procs + 1] = helpers.spawn("thaw", "sh -c " .. q("sleep 0.6; kill -CONT " .. table.concat(frozen, " ")))
      end }
      local remote, copy = info.dir .. "/paused-" .. mode, dir .. "/paused-" .. mode
      local n
      if mode == "get" then
        n = assert(s:get(info.dir .. "/interrupt-source", copy, opts))
      else
        n = assert(s:put(source, remote, opts))
        copy = remote
      end
      s:close()
      assert.equals(8 * 1024 * 1024, n)
      assert.is_true(helpers.read_file(copy) == helpers.read_file(source), "the copy differs")
    end)
  end

  it("still times out a stalled transfer after sftp.timeout", function()
    local connkit = require "connkit"
    local before = sshd_children()
    local acct = connkit.integration { name = "S", key = "s", auth = "sftp",
      sftp = { host = info.host, port = info.port, host_key = info.host_keys["ssh-ed25519"].fingerprint, timeout = 10 },
    }:account { credentials = { username = info.user, private_key = info.keys.ed25519.path } }
    local s = assert(acct:sftp())
    -- (the 1 s limit only once connected: a busy machine may take longer to log in)
    s:set_timeout(1)
    local t0
    local n, err = s:get(info.dir .. "/interrupt-source", dir .. "/timeout", { chunk_size = 65536,
      progress = function()
        if not t0 then freeze_since(before); t0 = socket.gettime() end
      end })
    local took = socket.gettime() - t0
    assert.is_nil(n)
    assert.equals("timeout", err.code)
    -- once: closing the file of a broken session waits for nothing
    assert.is_true(took >= 0.9 and took < 1.8, "took " .. took)
    assert.is_false(s:is_open())
    s:close()
  end)

  it("closes the interrupted session; a new one transfers", function()
    local again = info.dir .. "/after-interrupt.txt"
    helpers.write_file(again, "the file after the interruption\n")
    local proc, t0 = run("sftp-caught", CAUGHT, "get", info.dir .. "/interrupt-source", dir .. "/caught", again)
    wait_for(proc, "caught[^\n]*\n")
    local took = socket.gettime() - t0
    local out = wait_for(proc, "again %d+\n")
    assert.is_true(took < LIMIT, ("took %.3f s:\n%s"):format(took, out))
    assert.matches("caught false [^\n]*interrupted!\nopen false\n", out)
    assert.matches("again 32\n", out, 1, true)
    -- what the server sent on the new session
    assert.equals("the file after the interruption\n", helpers.read_file(dir .. "/caught.again"))
  end)
end)
