-- The control for openresty_spec's non-blocking measurement: the same GET as
-- slow_get, written directly on an ngx.socket.tcp cosocket (HTTP/1.0, the
-- reply read to the end), which yields to the worker while it waits.
return function(args)
  local host, port = args.base:match("^http://([^:/]+):(%d+)")
  ngx.update_time()
  local t0 = ngx.now()
  local sock = ngx.socket.tcp()
  sock:settimeout(10000)
  assert(sock:connect(host, tonumber(port)))
  assert(sock:send("GET " .. (args.path or "/slow") .. " HTTP/1.0\r\nHost: " .. host .. "\r\n\r\n"))
  local reply = assert(sock:receive("*a"))
  sock:close()
  ngx.update_time()
  return {
    status = tonumber(reply:match("^HTTP/1%.%d (%d%d%d)")),
    body = reply:match("\r\n\r\n(.*)$"),
    elapsed = ngx.now() - t0,
  }
end
