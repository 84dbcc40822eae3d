--- redis-server (Debian) on a free 127.0.0.1 port, in its own directory,
-- with a password. `helpers.peer("redis")` gives the shared instance;
-- `info.new{ appendonly = true, password = false }` starts a private one.
--
-- info: host, port, password, url (redis://:password@127.0.0.1:port/0),
-- dir, pid, log, cli(...) (runs redis-cli with those words; returns its
-- output), pause() / resume() (SIGSTOP / SIGCONT), kill() (SIGKILL),
-- restart() (start again on the same port and directory: with appendonly
-- the data comes back from the AOF), stop().
local function start(helpers, opts)
  opts = opts or {}
  local q = helpers.shell_quote
  local dir = helpers.tmpdir("redis")
  local port = helpers.free_port()
  local password = opts.password
  if password == nil then password = "redis pw:" .. select(2, helpers.run("openssl rand -hex 8")) end
  if password then password = password:gsub("%s+$", "") end
  local lines = {
    "bind 127.0.0.1", "port " .. port, "dir " .. dir, "daemonize no", "pidfile " .. dir .. "/redis.pid",
    'save ""', "appendonly " .. (opts.appendonly and "yes" or "no"),
    "appendfsync " .. (opts.appendfsync or "always"), "protected-mode no", "loglevel notice",
  }
  if password then lines[#lines + 1] = "requirepass " .. ('"' .. password .. '"') end
  local conf = dir .. "/redis.conf"
  helpers.write_file(conf, table.concat(lines, "\n") .. "\n", "600")

  local info = { host = "127.0.0.1", port = port, password = password or nil, dir = dir }
  info.url = "redis://" .. (password and (":" .. password:gsub("[^%w]", function(c)
    return ("%%%02X"):format(c:byte()) end) .. "@") or "") .. "127.0.0.1:" .. port .. "/0"

  local proc
  local function launch()
    proc = helpers.spawn("redis", "/usr/bin/redis-server " .. q(conf), { log = dir .. "/redis.log" })
    info.pid, info.log = proc.pid, proc.log
    helpers.wait_port(port, 15, proc)
    -- accepting connections is not yet serving: wait until it answers
    for _ = 1, 100 do
      if info.cli("PING"):find("PONG", 1, true) then return end
      require("socket").sleep(0.05)
    end
    error("redis peer: no PONG from 127.0.0.1:" .. port)
  end

  --- redis-cli against this server (password through the environment).
  function info.cli(...)
    local words = {}
    for i = 1, select("#", ...) do words[#words + 1] = q(tostring(select(i, ...))) end
    local env = password and ("REDISCLI_AUTH=" .. q(password) .. " ") or ""
    local _, out = helpers.run(env .. "redis-cli -h 127.0.0.1 -p " .. port .. " " .. table.concat(words, " "))
    return out
  end

  --- Calls of a command since the last CONFIG RESETSTAT (INFO commandstats).
  function info.calls(command)
    local out = info.cli("INFO", "commandstats")
    return tonumber(out:match("cmdstat_" .. command:lower() .. ":calls=(%d+)")) or 0
  end

  function info.pause() helpers.execute("kill -STOP " .. proc.pid) end
  function info.resume() helpers.execute("kill -CONT " .. proc.pid) end
  function info.kill()
    helpers.execute("kill -CONT " .. proc.pid .. "; kill -9 " .. proc.pid)
    -- (a killed server may stay a zombie a while: wait for its port instead)
    local socket = require "socket"
    for _ = 1, 100 do
      local c = socket.tcp()
      c:settimeout(0.2)
      local ok = c:connect("127.0.0.1", port)
      c:close()
      if not ok then break end
      socket.sleep(0.02)
    end
  end
  function info.restart()
    info.kill()
    launch()
  end
  local extras = {}
  function info.new(o)
    local other = start(helpers, o)
    extras[#extras + 1] = other
    return other
  end
  function info.stop()
    for _, e in ipairs(extras) do e.stop() end
    if proc and proc.pid then
      helpers.execute("kill -CONT " .. proc.pid .. " 2>/dev/null")
      helpers.stop(proc)
    end
  end
  launch()
  return info
end

return function(helpers) return start(helpers) end
