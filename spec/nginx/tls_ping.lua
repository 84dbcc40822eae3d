-- A TLS connection on a cosocket to 127.0.0.1:args.port with the
-- certificate verified against lua_ssl_trusted_certificate (name
-- args.name, default "localhost"), then GET args.path (default /ping).
return function(args)
  local sock = ngx.socket.tcp()
  sock:settimeout(5000)
  assert(sock:connect("127.0.0.1", tonumber(args.port)))
  -- lua-resty-core 0.1.25 raises ("assertion failed!", resty/core/socket.lua
  -- 244) instead of returning nil, err when a verification fails without
  -- the handshake having yielded; nginx logs the reason either way
  local ok, session, err = pcall(sock.sslhandshake, sock, nil, args.name or "localhost", true)
  if not ok then session, err = nil, session end
  if not session then
    sock:close()
    return { verified = false, err = err }
  end
  assert(sock:send("GET " .. (args.path or "/ping") .. " HTTP/1.0\r\nHost: localhost\r\n\r\n"))
  local reply = assert(sock:receive("*a"))
  sock:close()
  return { verified = true, body = reply:match("\r\n\r\n(.*)$") }
end
