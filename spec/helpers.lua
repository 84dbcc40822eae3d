--- Test helpers: loopback peers started on free ports and stopped by PID.
--
-- Loaded by busted as a helper (see .busted) and by specs with
-- `require "helpers"`, so there is one instance per run. A peer is started the
-- first time a spec asks for it (`helpers.peer("httpbin")`) and stopped when
-- the suite ends. Peers live in spec/peers/<name>.lua and return
-- `function(helpers) -> info` where info has at least `stop()`.
local socket = require "socket"

local helpers = {}

helpers.root = os.getenv("CONNKIT_ROOT") or "."
helpers.tmp_root = os.getenv("CONNKIT_TMP") or "/tmp"

local started = {}   -- name -> info, in start order in `order`
local order = {}

--- A command-line word quoted for sh.
function helpers.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
local q = helpers.shell_quote

-- Under `make test-asan` the interpreter runs with the sanitizer runtimes
-- preloaded; the programs the specs start (peers, curl, mktemp) must not be.
local CLEAN_ENV = "env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS "
helpers.clean_env = CLEAN_ENV

--- Runs a shell command; returns true when it exits 0, plus its output.
-- (The exit status is echoed: LuaJIT's popen close does not report it.)
function helpers.run(cmd)
  local p = assert(io.popen(CLEAN_ENV .. "sh -c " .. q(cmd .. '\necho "__rc=$?"') .. " 2>&1", "r"))
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  out = out:gsub("__rc=%d+%s*$", "")
  return rc == 0, out
end

--- Runs a shell command that must succeed; raises with its output if not.
-- Returns the output.
function helpers.sh(cmd)
  local ok, out = helpers.run(cmd)
  assert(ok, cmd .. "\n" .. out)
  return out
end

--- Whether a file exists (and can be opened).
function helpers.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- The SHA-256 (hex) of a file, by sha256sum: the file is not read into Lua.
function helpers.file_sha256(path)
  return helpers.sh("sha256sum " .. q(path)):match("^(%x+)")
end

--- The size of a local file in bytes, or nil when it cannot be opened.
function helpers.file_size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

--- A fresh private directory under /tmp.
function helpers.tmpdir(tag)
  local p = assert(io.popen(CLEAN_ENV .. "mktemp -d " .. q(helpers.tmp_root .. "/connkit-" .. (tag or "t") .. ".XXXXXX")))
  local dir = p:read("*l")
  p:close()
  assert(dir and dir ~= "", "mktemp failed")
  return dir
end

function helpers.write_file(path, data, mode)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  if mode then helpers.execute("chmod " .. mode .. " " .. q(path)) end
end

function helpers.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- A TCP port on 127.0.0.1 that nothing listens on right now.
function helpers.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

--- Waits until something accepts connections on 127.0.0.1:port.
function helpers.wait_port(port, timeout, proc)
  local deadline = socket.gettime() + (timeout or 15)
  while socket.gettime() < deadline do
    local c = socket.tcp()
    c:settimeout(0.5)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    if ok then return true end
    if proc and not helpers.alive(proc.pid) then break end
    socket.sleep(0.05)
  end
  local log = proc and proc.log and helpers.read_file(proc.log) or ""
  error(("nothing listens on 127.0.0.1:%d%s\n%s"):format(port,
    proc and (" (" .. proc.name .. ")") or "", log:sub(-2000)))
end

--- os.execute's result as a boolean on every Lua version.
function helpers.execute(cmd)
  local r = os.execute(CLEAN_ENV .. "sh -c " .. q(cmd))
  return r == true or r == 0
end

function helpers.alive(pid)
  return helpers.execute("kill -0 " .. pid .. " 2>/dev/null")
end

--- Starts `cmd` (a shell command line) in the background with its output in
-- a log file. The sanitizer preload of `make test-asan` is not passed on:
-- peers are ordinary programs. Returns { pid, log, name }.
function helpers.spawn(name, cmd, opts)
  opts = opts or {}
  local log = opts.log or (helpers.tmpdir(name) .. "/" .. name .. ".log")
  local env = "env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS -u LSAN_OPTIONS"
  if opts.env then
    for k, v in pairs(opts.env) do env = env .. " " .. k .. "=" .. q(v) end
  end
  local line = ("%s sh -c %s > %s 2>&1 < /dev/null & echo $!"):format(
    env, q("exec " .. cmd), q(log))
  local p = assert(io.popen(line, "r"))
  local pid = tonumber(p:read("*l"))
  p:close()
  assert(pid, "could not start " .. name)
  return { pid = pid, log = log, name = name }
end

--- The interpreter the specs run on, for child Lua processes.
helpers.lua = os.getenv("CONNKIT_LUA") or "lua5.4"

--- Environment for child Lua processes (add to spawn's env): under
-- `make test-asan` the module is built with ASan, so the child needs the
-- runtime preloaded (without leak checks: it may be killed, or exit without
-- closing its state).
function helpers.child_env(extra)
  local env = { ASAN_OPTIONS = "detect_leaks=0", UBSAN_OPTIONS = "halt_on_error=1" }
  local preload = os.getenv("LD_PRELOAD")
  if preload and preload ~= "" then env.LD_PRELOAD = preload end
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

--- Runs examples/<name> as the README says to (a Lua process of its own,
-- with the module under test: the paths of this run are inherited), with
-- `args` (a list) and `env` (a table) added; gives up after `timeout`
-- seconds (default 60). Returns true when it exits 0, plus its output.
function helpers.run_example(name, args, env, timeout)
  local words = {}
  for k, v in pairs(helpers.child_env(env)) do words[#words + 1] = k .. "=" .. q(v) end
  table.sort(words)
  local argv = {}
  for i, a in ipairs(args or {}) do argv[i] = q(a) end
  return helpers.run(("env %s timeout %d %s %s %s"):format(table.concat(words, " "), timeout or 60,
    q(helpers.lua), q(helpers.root .. "/examples/" .. name), table.concat(argv, " ")))
end

--- Stops a process started by spawn: TERM, then KILL if it lingers.
function helpers.stop(proc)
  if not proc or not proc.pid then return end
  helpers.execute("kill " .. proc.pid .. " 2>/dev/null")
  for _ = 1, 50 do
    if not helpers.alive(proc.pid) then proc.pid = nil return end
    socket.sleep(0.05)
  end
  helpers.execute("kill -9 " .. proc.pid .. " 2>/dev/null")
  proc.pid = nil
end

--- The named peer, started on first use; see spec/peers/.
function helpers.peer(name)
  local info = started[name]
  if not info then
    local start = require("peers." .. name)
    info = start(helpers)
    started[name] = info
    order[#order + 1] = name
  end
  return info
end

--- Stops every peer this run started, newest first.
function helpers.stop_peers()
  for i = #order, 1, -1 do
    local info = started[order[i]]
    if info and info.stop then pcall(info.stop) end
    started[order[i]] = nil
    order[i] = nil
  end
end

-- Under busted: stop the peers when the suite ends.
local ok, busted = pcall(require, "busted")
if ok and type(busted) == "table" then
  pcall(function()
    busted.subscribe({ "suite", "end" }, function()
      helpers.stop_peers()
      return nil, true
    end)
  end)
end

return helpers
