--- The ngx transport: HTTP/1.1 over OpenResty's cosockets (ngx.socket.tcp),
-- so a request yields to nginx instead of blocking the worker. It takes the
-- same finished requests as the curl transport and gives the same replies
-- and error codes. TLS is verified with the CAs of nginx's
-- lua_ssl_trusted_certificate (SNI and the name check use the URL's host
-- when it is a name); a client certificate (mTLS) is presented when the
-- request has one; connections go back to a cosocket pool per worker,
-- keyed by host, port and TLS settings (the client certificate's
-- fingerprint too), after a reply read to its end.
-- Names are resolved by nginx's `resolver`.
--
--   available() -> true | false, reason
--   of_request(req), of_table(t) -> what perform and start take
--   perform(spec) -> response | nil, code, message
--   start(spec) -> transfer (t:done(), t:result(), t:cancel()), in a light thread
--   poll(seconds) -> transfers finished since the last poll; pending() -> in flight
--   sleep(seconds); spawn(f, ...) -> job (done(), result(), cancel())
-- (see connkit.transport for the interface)
-- @module connkit.transport.ngx
local wire = require "connkit.transport.ngx_wire"
local ngx_url = require "connkit.transport.ngx_url"
local ngx_reply = require "connkit.transport.ngx_reply"
local tls = require "connkit.transport.ngx_tls"
local files = require "connkit.transport.ngx_files"
local threads = require "connkit.transport.ngx_threads"
local clock = require("connkit.core").now

local floor, ceil, min = math.floor, math.ceil, math.min
local tonumber, setmetatable, rawget = tonumber, setmetatable, rawget

local M = { name = "ngx" }

-- the phases whose Lua may use cosockets (lua-nginx-module's contexts of
-- ngx.socket.tcp)
local COSOCKET_PHASES = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}
M.PHASES = COSOCKET_PHASES

--- Whether a request made here can use cosockets: true, or false and why.
-- @treturn[1] boolean true
-- @treturn[2] boolean false
-- @treturn[2] string why not
function M.available()
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.socket) ~= "table" or type(ngx.get_phase) ~= "function" then
    return false, "not inside OpenResty (there is no ngx.socket)"
  end
  local phase = ngx.get_phase()
  if not COSOCKET_PHASES[phase] then
    return false, ("cosockets cannot run in nginx's %s phase"):format(phase)
  end
  return true
end

local MAX_BODY = 256 * 1024 * 1024 -- the curl transport's default
local NO_LIMIT_MS, ms, arm = ngx_reply.NO_LIMIT_MS, ngx_reply.ms, ngx_reply.arm
local CURL_CONNECT_TIMEOUT = 300 -- libcurl's connect timeout when none is set
local STALE_RETRIES = 3 -- pooled connections the peer closed, tried again

local CA_FILE_MSG = "tls.ca_file cannot be honoured by the ngx transport: cosockets trust the CAs"
  .. " of nginx's lua_ssl_trusted_certificate only; put that CA there (in nginx.conf) and leave"
  .. " tls.ca_file out"

local response_mt
local function response_meta()
  response_mt = response_mt or require "connkit.http.response"
  return response_mt
end

local function elapsed_ms(started)
  return floor((ngx.now() - started) * 1000)
end

local function connect_failure(u, err, started)
  if err == "timeout" then
    return nil, "timeout", ("Connection timed out after %d milliseconds"):format(elapsed_ms(started))
  end
  if err:find("resolve", 1, true) then
    return nil, "dns", ("Could not resolve host: %s (%s; cosockets look names up with the"
      .. " resolver directive of nginx.conf)"):format(u.host, err)
  end
  return nil, "connect", ("Failed to connect to %s port %d after %d ms: %s")
    :format(u.host, u.port, elapsed_ms(started), err)
end

local function tls_failure(u, err, started)
  if err == "timeout" then
    return nil, "timeout", ("SSL connection timeout after %d milliseconds"):format(elapsed_ms(started))
  end
  local hint = ""
  if err:find("^%d+:") or err:find("certificate", 1, true) then
    hint = " (the ngx transport trusts the CAs of nginx's lua_ssl_trusted_certificate,"
      .. " up to lua_ssl_verify_depth)"
  end
  return nil, "tls", ("SSL handshake with %s port %d failed: %s%s"):format(u.host, u.port, err, hint)
end

--- What perform and start take for a prepared request: the request itself
-- (its fields are read raw).
-- @tparam connkit.http.request.Request req the request
-- @return req
function M.of_request(req) return req end

--- The same for a table of a request's fields: the table, or nil,
-- "header", message for a header line with CR, LF or NUL.
-- @tparam table t method, url, header_lines, body, timeout, ...
-- @treturn[1] table t
-- @return[2] nil
-- @treturn[2] string the error code
-- @treturn[2] string the message
function M.of_table(t)
  local lines = rawget(t, "header_lines")
  if lines then
    for i = 1, #lines do
      if lines[i]:find("[\r\n%z]") then
        return nil, "header", "a header value holds CR, LF or NUL; request not sent"
      end
    end
  end
  return t
end

local STALE = {} -- an attempt that met a pooled connection the peer had closed

-- One connection, one request, one reply. Returns a reply, or nil, code,
-- message, or STALE.
local function exchange(c)
  local u, st = c.u, c
  local sock = ngx.socket.tcp()
  local left = c.deadline and c.deadline - ngx.now()
  if left and left <= 0 then
    return nil, "timeout", ("Connection timed out after %d milliseconds"):format(elapsed_ms(st.started))
  end
  local rw = left and ms(left) or NO_LIMIT_MS
  sock:settimeouts(ms(left and min(c.connect_timeout, left) or c.connect_timeout), rw, rw)
  local ok, err = sock:connect(u.connect_host, u.port, c.pool_opts)
  if not ok then return connect_failure(u, err, st.started) end
  local reused = (sock:getreusedtimes() or 0) > 0
  if c.https and not reused then
    ok, err = tls.handshake(sock, c.sni, u.ip and u.host, c.client)
    if not ok then
      sock:close()
      return tls_failure(u, err, st.started)
    end
  end
  if not arm(st, sock) then
    sock:close()
    return nil, "timeout", ("Operation timed out after %d milliseconds with 0 bytes received")
      :format(elapsed_ms(st.started))
  end
  ok, err = sock:send(c.request)
  if ok and c.multipart then ok, err = files.send(sock, c.multipart) end
  if not ok and err:find("^io: ") then
    sock:close()
    return nil, "io", err:sub(5)
  end
  if not ok then
    sock:close()
    if reused and err ~= "timeout" then return STALE end
    if err == "timeout" then
      return nil, "timeout", ("Operation timed out after %d milliseconds with 0 bytes received")
        :format(elapsed_ms(st.started))
    end
    return nil, "network", "Send failure: " .. tostring(err)
  end
  st.received = 0
  if c.sink then c.sink:abandon() end -- (a new attempt: the file starts anew)
  local reply, code, msg = ngx_reply.read_reply(sock, st, c.method, c.read_limit, c.sink)
  if not reply then
    sock:close()
    if c.sink then c.sink:abandon() end
    if reused and st.received == 0 and code == "network" then return STALE end
    return nil, code, msg
  end
  if reply.keep then sock:setkeepalive() else sock:close() end
  return reply
end

local function too_large(max)
  return nil, "too_large", ("the response body is larger than %d bytes"):format(max)
end

--- Sends the finished request `spec` (method, url, header_lines, body,
-- timeout, connect_timeout, max_body, decompress, ca_file, client_tls) and reads the
-- reply. Returns a response, or nil, code, message.
-- @tparam table spec the request (its fields read raw)
-- @treturn[1] connkit.http.response.Response the response
-- @return[2] nil
-- @treturn[2] string the error code
-- @treturn[2] string the message
function M.perform(spec)
  local u, code, msg = ngx_url.parse_url(rawget(spec, "url"))
  if not u then return nil, code, msg end
  local https = u.scheme == "https"
  if https and rawget(spec, "ca_file") then return nil, "config", CA_FILE_MSG end
  local client = https and rawget(spec, "client_tls") -- mTLS: connkit.transport.ngx_client_cert
  if client then
    client, code, msg = require("connkit.transport.ngx_client_cert").get(client)
    if not client then return nil, code, msg end
  end
  local sink = files.sink(spec)
  -- a streamed body is asked for as it is (no Accept-Encoding): cosockets
  -- have no streaming decoder here
  local decompress = rawget(spec, "decompress") ~= false and not sink
  local mp
  local parts = rawget(spec, "multipart")
  if parts then
    mp, code, msg = files.multipart(parts)
    if not mp then return nil, code, msg end
  end
  local request
  request, code, msg = wire.request(spec, u, decompress, mp)
  if not request then return nil, code, msg end
  local max = tonumber(rawget(spec, "max_body"))
  if not max or max < 1 then max = MAX_BODY end
  max = floor(max)
  ngx.update_time()
  local started, clock0 = ngx.now(), clock() -- (res.time: ngx.now() counts whole milliseconds)
  local timeout = tonumber(rawget(spec, "timeout"))
  local deadline = timeout and timeout > 0 and started + timeout or nil
  local connect_timeout = tonumber(rawget(spec, "connect_timeout"))
  if not connect_timeout or connect_timeout <= 0 then connect_timeout = CURL_CONNECT_TIMEOUT end
  local sni = https and not u.ip and u.host or nil
  -- the state of the transfer (connkit.transport.ngx_reply reads started,
  -- received, deadline and armed_at)
  local c = {
    started = started, received = 0, armed_at = false,
    u = u, https = https, sni = sni, request = request, deadline = deadline,
    connect_timeout = connect_timeout, method = rawget(spec, "method") or "GET",
    -- a compressed body may be a little larger than what it decodes to
    read_limit = decompress and (max + floor(max / 64) + 1024) or max,
    pool_opts = u.pool_opts, sink = sink, multipart = mp, client = client,
  }
  if not c.pool_opts then
    c.pool_opts = { pool = https and ("connkit https %s:%d sni=%s verify"):format(u.host, u.port, sni or "")
      or ("connkit http %s:%d"):format(u.host, u.port) }
    u.pool_opts = c.pool_opts -- (u is the cached parse of this URL)
  end
  if client then
    -- a pool per client certificate: a connection made with one never
    -- serves a request that presents another (or none)
    local by_cert = u.pool_by_cert or {}
    u.pool_by_cert = by_cert
    local opts = by_cert[client.fingerprint]
    if not opts then
      opts = { pool = c.pool_opts.pool .. " cert=" .. client.fingerprint }
      by_cert[client.fingerprint] = opts
    end
    c.pool_opts = opts
  end
  local reply
  for _ = 0, STALE_RETRIES do
    reply, code, msg = exchange(c)
    if reply ~= STALE then break end
    reply = nil
  end
  if reply == STALE then reply, code, msg = nil, "network", "Recv failure: the connection was closed" end
  if not reply then
    if code == "too_large" then return too_large(max) end
    return nil, code, msg
  end
  local body, size = reply.body, nil
  if reply.streamed then
    local e = reply.encoding and reply.encoding:lower():match("^%s*(.-)%s*$")
    if e and e ~= "" and e ~= "identity" then
      sink:abandon()
      return nil, "http", ("the ngx transport does not decode a streamed body (Content-Encoding: %s):"
        .. " leave Accept-Encoding out of the request's headers"):format(e)
    end
    local ok
    ok, code, msg = sink:finish()
    if not ok then return nil, code, msg end
    size = sink.size
  elseif decompress and reply.encoding then
    body, code, msg = ngx_reply.decode(body, reply.encoding, max)
    if not body then
      if code == "too_large" then return too_large(max) end
      return nil, code, msg
    end
  elseif #body > max then
    return too_large(max)
  end
  local res = { status = reply.status, body = body, _raw_headers = reply.raw, size = size or #body,
    url = rawget(spec, "shown_url") or rawget(spec, "url"), time = clock() - clock0,
    http_version = reply.http10 and "1.0" or "1.1" }
  if reply.location and reply.status >= 300 and reply.status < 400 then
    res.redirect_url = ngx_url.resolve(rawget(spec, "url"), reply.location)
  end
  return setmetatable(res, response_meta())
end

--- Starts `spec` in an ngx light thread; returns a transfer (t:done(),
-- t:result(), t:cancel(); connkit.transport.ngx_threads).
-- @tparam table spec the request
-- @treturn table the transfer
function M.start(spec)
  return threads.start(M.perform, spec)
end

M.poll, M.pending, M.sleep, M.spawn = threads.poll, threads.pending, threads.sleep, threads.spawn

return M
