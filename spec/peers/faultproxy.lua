--- The fault proxy (spec/peers/faultproxy.js, plain node): TCP listeners on
-- free loopback ports that forward to a real peer and misbehave on demand,
-- with Toxiproxy's vocabulary (latency, bandwidth, stall, stall_headers,
-- drip, reset, slice, cut, slow_close; see the .js file), plus misbehaving
-- clients for servers of ours (the loopback login listener).
--
-- `helpers.peer("faultproxy")` gives the shared instance; `info.new()` starts
-- a private one (a spec may kill it: a peer killed mid-transfer).
--
-- info.listen(upstream_port, fault, arg, dir) -> port
-- info.set(port, fault, arg, dir)     changes a listener's fault, open connections included
-- info.client(port, fault, arg, data) a client that sends `data` shaped by the fault
-- info.stats(port) -> { accepted =, open = }
-- info.pid, info.stop()
local socket = require "socket"
local cjson = require "cjson.safe"

local function urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local function start(helpers)
  local port = helpers.free_port()
  local proc = helpers.spawn("faultproxy", "node " .. helpers.shell_quote(helpers.root .. "/spec/peers/faultproxy.js")
    .. " " .. port)
  helpers.wait_port(port, 15, proc)

  -- One control GET over a plain socket (fast: no curl process per call).
  local function call(path, params)
    local parts = {}
    for k, v in pairs(params) do
      if v ~= nil then parts[#parts + 1] = k .. "=" .. urlencode(v) end
    end
    local c = assert(socket.tcp())
    c:settimeout(5)
    assert(c:connect("127.0.0.1", port))
    assert(c:send(("GET %s?%s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
      :format(path, table.concat(parts, "&"))))
    local raw = c:receive("*a") or ""
    c:close()
    local status = tonumber(raw:match("^HTTP/1%.1 (%d+)"))
    local body = raw:match("\r\n\r\n(.*)$") or ""
    local json = cjson.decode(body)
    if status ~= 200 or not json then
      error(("faultproxy %s: %s %s"):format(path, tostring(status), body), 2)
    end
    return json
  end

  local info = { port = port, pid = proc.pid, log = proc.log }
  function info.listen(upstream, fault, arg, dir)
    -- (JSON numbers are floats to cjson: "%d" gives the port as an integer)
    return tonumber(("%d"):format(call("/listen", { upstream = upstream, fault = fault, arg = arg, dir = dir }).port))
  end
  function info.set(lport, fault, arg, dir)
    call("/set", { port = lport, fault = fault or "none", arg = arg, dir = dir })
  end
  function info.client(cport, fault, arg, data)
    call("/client", { port = cport, fault = fault, arg = arg, data = data })
  end
  function info.stats(lport) return call("/stats", { port = lport }) end
  function info.new() return start(helpers) end
  function info.stop() helpers.stop(proc) end
  return info
end

return start
