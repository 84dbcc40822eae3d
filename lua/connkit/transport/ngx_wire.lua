--- HTTP/1.1 on a connected cosocket, for the ngx transport: the request
-- head as libcurl would write it (the same header line semantics), and the
-- reply read with cosocket reads (lines, counted bytes, chunks). Errors are
-- (nil, code, message) with the curl transport's codes and wording.
-- @module connkit.transport.ngx_wire
local core = require "connkit.core"

local find, match, lower, sub, byte = string.find, string.match, string.lower, string.sub, string.byte
local concat, tonumber, floor, ceil = table.concat, tonumber, math.floor, math.ceil

local M = {}

-- what libcurl caps the header block at (a longer one is a broken reply)
local HEAD_MAX = 100 * 1024
-- the size of each read of a body that runs until the connection closes
local READ_CHUNK = 65536

--- The Accept-Encoding line for decompress (what core.inflate decodes).
M.ACCEPT_ENCODING = "Accept-Encoding: deflate, gzip"

--- Splits an absolute http(s) URL. Returns a table { scheme, host (IPv6
-- without brackets), connect_host, port, host_header, target, userinfo,
-- ip (the host is an IP literal) }, or nil, "url", message.
local function parse_url(url)
  local scheme, rest = match(url, "^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "url", "URL using bad/illegal format or missing URL" end
  scheme = lower(scheme)
  if scheme ~= "http" and scheme ~= "https" then
    return nil, "url", ('Protocol "%s" not supported (the ngx transport speaks http and https)'):format(scheme)
  end
  local authority, target = match(rest, "^([^/?#]*)(.*)$")
  local hash = find(target, "#", 1, true)
  if hash then target = sub(target, 1, hash - 1) end
  if target == "" or byte(target, 1) == 63 then target = "/" .. target end -- "?"
  local userinfo, hostport = match(authority, "^(.*)@(.*)$")
  if not userinfo then hostport = authority end
  local host, port, ip = match(hostport, "^%[([%x:.]+)%]:?(%d*)$"), nil, false
  if host then
    port, ip = match(hostport, "%]:?(%d*)$"), true
  else
    host, port = match(hostport, "^([^:]+):?(%d*)$")
    if not host or find(host, "[^%w.%-_~%%]") then return nil, "url", "URL using bad/illegal format or missing URL" end
    ip = find(host, "^%d+%.%d+%.%d+%.%d+$") ~= nil
  end
  local default = scheme == "https" and 443 or 80
  local n = port ~= "" and tonumber(port) or default
  if n < 1 or n > 65535 then return nil, "url", "Port number out of range" end
  local shown = ip and find(host, ":", 1, true) and ("[" .. host .. "]") or host
  return {
    scheme = scheme, host = host, port = n, target = target, userinfo = userinfo, ip = ip,
    connect_host = shown,
    host_header = n == default and shown or (shown .. ":" .. n),
  }
end

-- parsed URLs by URL string (an account sends the same few again and
-- again), up to URL_CACHE_MAX; shared: read only
local URL_CACHE_MAX = 256
local url_cache, url_count = {}, 0

--- parse_url, cached per URL string: the table returned is shared (the
-- transport may add its own derived fields to it, never change these).
function M.parse_url(url)
  local u = url_cache[url]
  if u then return u end
  local code, msg
  u, code, msg = parse_url(url)
  if not u then return nil, code, msg end
  if url_count >= URL_CACHE_MAX then url_cache, url_count = {}, 0 end
  url_cache[url], url_count = u, url_count + 1
  return u
end

-- the names of the header lines (lower case) that the caller set or
-- removed, and the lines to send, in curl's reading: "Name: value" is sent,
-- "Name:" (nothing after the colon) sends nothing and removes a header the
-- transport would add, "Name;" sends Name with an empty value.
local function custom_lines(lines)
  local names, send = {}, {}
  for i = 1, #lines do
    local line = lines[i]
    if find(line, "[\r\n%z]") then
      return nil, "header", "a header value holds CR, LF or NUL; request not sent"
    end
    local name, value = match(line, "^([^:]+):(.*)$")
    if name then
      names[lower(name)] = true
      if find(value, "%S") then send[#send + 1] = line end
    else
      name = match(line, "^([^;]+);%s*$")
      if name then
        names[lower(name)] = true
        send[#send + 1] = name .. ":"
      end
    end
  end
  return names, send
end

-- custom_lines per lines table: an account sends the same table with every
-- request until its token changes (tables are never changed once sent)
local lines_cache = setmetatable({}, { __mode = "k" })
local NO_LINES = {}

--- The request head and body to write for spec `spec` to URL parts `u`:
-- returns a table of strings for sock:send, or nil, "header", message.
-- `mp`: a multipart body (connkit.transport.ngx_files), sent after the head.
function M.request(spec, u, decompress, mp)
  local lines = rawget(spec, "header_lines") or NO_LINES
  local cached = lines_cache[lines]
  if not cached then
    local names, send, err = custom_lines(lines)
    if not names then return nil, send, err end
    cached = { names, send }
    lines_cache[lines] = cached
  end
  local names, send = cached[1], cached[2]
  local method = rawget(spec, "method") or "GET"
  local body = rawget(spec, "body")
  -- libcurl sends a body (and its length and a form type) for POST and for
  -- any method given one, never for HEAD
  if method == "HEAD" then body = nil elseif method == "POST" and not mp then body = body or "" end
  local out, n = { method, " ", u.target, " HTTP/1.1\r\n" }, 4
  local function add(line)
    out[n + 1], out[n + 2] = line, "\r\n"
    n = n + 2
  end
  if not names.host then add("Host: " .. u.host_header) end
  if u.userinfo and not names.authorization then
    add("Authorization: Basic " .. ngx.encode_base64(ngx.unescape_uri(u.userinfo)))
  end
  if not names.accept then add("Accept: */*") end
  for i = 1, #send do add(send[i]) end
  if decompress and not names["accept-encoding"] then add(M.ACCEPT_ENCODING) end
  if mp then
    if not names["content-length"] then add("Content-Length: " .. mp.length) end
    if not names["content-type"] then add("Content-Type: " .. mp.content_type) end
  elseif body then
    if not names["content-length"] then add("Content-Length: " .. #body) end
    if not names["content-type"] then add("Content-Type: application/x-www-form-urlencoded") end
  end
  out[n + 1] = "\r\n"
  if body and body ~= "" then out[n + 2] = body end
  return out
end

local NO_LIMIT_MS = 2147483647 -- cosocket timeouts must be below 2^31 ms

--- Seconds -> cosocket milliseconds: rounded up, at least 1, below 2^31.
local function ms(s)
  local v = ceil(s * 1000)
  if v < 1 then return 1 end
  return v > NO_LIMIT_MS and NO_LIMIT_MS or v
end
M.ms, M.NO_LIMIT_MS = ms, NO_LIMIT_MS

--- Sets the timeouts of sock to the time left until st.deadline (none:
-- left as they are); false once no time is left. ngx.now() moves only when
-- the worker ran its event loop: after a read that did not wait, the
-- timeouts stay as they are.
local function arm(st, sock)
  local deadline = st.deadline
  if not deadline then return true end
  local now = ngx.now()
  if now == st.armed_at then return true end
  local left = deadline - now
  if left <= 0 then return false end
  local t = ms(left)
  sock:settimeouts(t, t, t)
  st.armed_at = now
  return true
end
M.arm = arm

-- A failed read as (nil, code, message); `st` is the read's state.
local function read_failure(st, err, what)
  if err == "timeout" then
    return nil, "timeout", ("Operation timed out after %d milliseconds with %d bytes received")
      :format(floor((ngx.now() - st.started) * 1000), st.received)
  end
  if err == "closed" then
    if st.received == 0 then return nil, "network", "Empty reply from server" end
    return nil, "network", what
  end
  return nil, "network", "Recv failure: " .. tostring(err)
end

-- Reads one line (without its CRLF) under the time left.
local function line_of(sock, st, what)
  if not arm(st, sock) then return read_failure(st, "timeout") end
  local line, err = sock:receive("*l")
  if not line then return read_failure(st, err, what) end
  st.received = st.received + #line + 2
  return line
end

-- Reads n bytes under the time left.
local function bytes_of(sock, st, n, what)
  if not arm(st, sock) then return read_failure(st, "timeout") end
  local data, err, partial = sock:receive(n)
  if not data then
    if partial then st.received = st.received + #partial end
    return read_failure(st, err, what:format(n - #(partial or "")))
  end
  st.received = st.received + n
  return data
end

local CUT_HEAD = "the reply ended inside its header block"

-- The value of header `name` (lower case) in the header block `raw`
-- ("Name: value\r\n" lines); `lraw` is "\n" .. lower(raw). The first one.
local function field(raw, lraw, name)
  local _, colon = find(lraw, "\n" .. name .. ":", 1, true)
  if not colon then return nil end
  return match(raw, "^[ \t]*(.-)[ \t]*\r\n", colon) -- (lraw is one byte ahead of raw)
end

--- Reads the status line and header block (one receiveuntil), skipping
-- interim 1xx replies. Returns status, the header lines ("Name: value\r\n"
-- each, as libcurl's header callback gives them) and a table of the values
-- the transport needs, or nil, code, message.
local function read_head(sock, st)
  while true do
    if not arm(st, sock) then return read_failure(st, "timeout") end
    local head, err, partial = sock:receiveuntil("\r\n\r\n")(HEAD_MAX + 1)
    if not head then
      if partial and partial ~= "" then st.received = st.received + #partial end
      return read_failure(st, err, CUT_HEAD)
    end
    st.received = st.received + #head + 4
    if #head > HEAD_MAX then
      return nil, "protocol", "the reply cannot be read: a header line or the header block is over curl's limit (100 KB)"
    end
    local minor, status, eol = match(head, "^HTTP/1%.(%d) (%d%d%d)[^\r\n]*()")
    if not status then
      return nil, "protocol", "the reply does not start with an HTTP/1.x status line"
    end
    status = tonumber(status)
    if status >= 200 or status == 101 then
      local raw = sub(head, eol + 2)
      if raw ~= "" then raw = raw .. "\r\n" end
      local lraw = "\n" .. lower(raw)
      return status, raw, {
        http10 = minor == "0",
        ["content-length"] = field(raw, lraw, "content-length"),
        ["transfer-encoding"] = field(raw, lraw, "transfer-encoding"),
        connection = field(raw, lraw, "connection"),
        ["content-encoding"] = field(raw, lraw, "content-encoding"),
        location = field(raw, lraw, "location"),
      }
    end
  end
end

-- Reads a chunked body. Returns the parts and the trailer lines (libcurl
-- hands them to its header callback too), or nil, code, msg.
local function read_chunked(sock, st, limit, put)
  local total = 0
  while true do
    local line, code, msg = line_of(sock, st, "transfer closed with outstanding read data remaining")
    if not line then return nil, code, msg end
    local size = tonumber(match(line, "^%s*(%x+)%s*[;]?") or "", 16)
    if not size then return nil, "protocol", "invalid chunk size in the reply: '" .. sub(line, 1, 32) .. "'" end
    if size == 0 then break end
    total = total + size
    if total > limit then return nil, "too_large" end
    while size > 0 do -- (in pieces: a streamed body is never held whole)
      local k = size < READ_CHUNK and size or READ_CHUNK
      local data
      data, code, msg = bytes_of(sock, st, k, "transfer closed with outstanding read data remaining")
      if not data then return nil, code, msg end
      local ok, pcode, pmsg = put(data)
      if not ok then return nil, pcode, pmsg end
      size = size - k
    end
    line, code, msg = line_of(sock, st, "transfer closed with outstanding read data remaining")
    if not line then return nil, code, msg end
    if line ~= "" then return nil, "protocol", "a chunk of the reply does not end where its size says" end
  end
  local trailers = ""
  while true do -- trailers, up to the blank line
    local line, code, msg = line_of(sock, st, "transfer closed with outstanding read data remaining")
    if not line then return nil, code, msg end
    if line == "" then break end
    trailers = trailers .. line .. "\r\n"
  end
  return true, trailers
end

-- Reads a body that ends when the connection closes.
local function read_to_close(sock, st, limit, put)
  local total = 0
  while true do
    if not arm(st, sock) then return read_failure(st, "timeout") end
    local data, err, partial = sock:receive(READ_CHUNK)
    data = data or partial
    if data and data ~= "" then
      total = total + #data
      st.received = st.received + #data
      if total > limit then return nil, "too_large" end
      local ok, pcode, pmsg = put(data)
      if not ok then return nil, pcode, pmsg end
    end
    if err == "closed" then return true end
    if err then return read_failure(st, err) end
  end
end

local NO_BODY = { [204] = true, [304] = true }

--- Reads the reply to a request with method `method`. `st` holds started
-- (ngx.now()), received (bytes so far) and deadline (ngx.now() seconds, or
-- nil: no limit) and armed_at (see arm). Returns a reply table
-- { status, raw (the header lines), body, encoding, location, keep (the
-- connection can serve another request) }, or nil, code, message; code
-- "too_large" comes without a message (the caller names the limit).
-- `limit`: how many body bytes may be read. `sink` (connkit.transport.ngx_files):
-- where a 2xx body goes instead of reply.body (reply.streamed is then true).
function M.read_reply(sock, st, method, limit, sink)
  local status, raw, seen = read_head(sock, st)
  if not status then return nil, raw, seen end
  local reply = {
    status = status, raw = raw, encoding = seen["content-encoding"], location = seen.location,
    keep = not seen.http10 and not find(lower(seen.connection or ""), "close", 1, true),
    http10 = seen.http10,
  }
  local parts, put = {}, nil
  if sink and status >= 200 and status <= 299 then
    reply.streamed = true
    put = function(data) return sink:write(data) end
  else
    put = function(data) parts[#parts + 1] = data; return true end
  end
  local te, cl = seen["transfer-encoding"], seen["content-length"]
  local ok, code, msg = true, nil, nil
  if method == "HEAD" or NO_BODY[status] or status == 101 then
    ok = true
  elseif te and find(lower(te), "chunked%s*$") then
    ok, code, msg = read_chunked(sock, st, limit, put)
    if ok then reply.raw = raw .. code end -- the trailers
  elseif cl then
    if not find(cl, "^%d+$") or #cl > 15 then
      return nil, "protocol", "the reply's Content-Length is not one number: '" .. sub(cl, 1, 40) .. "'"
    end
    local n = tonumber(cl)
    if n > limit then return nil, "too_large" end
    -- (streamed: in pieces, so the body is never held whole)
    local piece = reply.streamed and READ_CHUNK or n
    while n > 0 and ok do
      local k = n < piece and n or piece
      local data
      data, code, msg = bytes_of(sock, st, k, "transfer closed with %d bytes remaining to read")
      if data then ok, code, msg = put(data) else ok = nil end
      n = n - k
    end
  else
    reply.keep = false
    ok, code, msg = read_to_close(sock, st, limit, put)
  end
  if not ok then return nil, code, msg end
  if not reply.streamed then reply.body = #parts == 1 and parts[1] or concat(parts) end
  return reply
end

--- Decodes a body sent with Content-Encoding `encoding` (gzip, deflate or
-- identity), at most max bytes out; nil, code, message otherwise.
function M.decode(body, encoding, max)
  local e = lower(match(encoding, "^%s*(.-)%s*$"))
  if e == "" or e == "identity" or body == "" then return body end
  if e == "gzip" or e == "x-gzip" or e == "deflate" then return core.inflate(body, max) end
  return nil, "http", ("Unrecognized content encoding type '%s': the ngx transport decodes deflate and gzip"):format(e)
end

-- RFC 3986 section 5.2.4: dot segments out of a path.
local function remove_dots(path)
  local out = {}
  for seg in (path .. "/"):gmatch("([^/]*)/") do
    if seg == ".." then
      if #out > 1 then out[#out] = nil end
    elseif seg ~= "." then
      out[#out + 1] = seg
    end
  end
  local last = match(path, "[^/]*$")
  if last == "." or last == ".." then out[#out + 1] = "" end
  return concat(out, "/")
end

--- The absolute URL a Location value points to, from the request's URL (as
-- libcurl's CURLINFO_REDIRECT_URL gives it).
function M.resolve(base, ref)
  ref = match(ref, "^%s*(.-)%s*$")
  if find(ref, "^%a[%w+.-]*:") then return ref end
  local scheme, authority, path, query = match(base, "^(%a[%w+.-]*:)//([^/?#]*)([^?#]*)(%??[^#]*)")
  if not scheme then return ref end
  if sub(ref, 1, 2) == "//" then return scheme .. ref end
  local origin = scheme .. "//" .. authority
  if ref == "" then return origin .. path .. query end
  local c = sub(ref, 1, 1)
  if c == "#" then return origin .. path .. query .. ref end
  if c == "?" then return origin .. (path == "" and "/" or path) .. ref end
  local rpath, rest = match(ref, "^([^?#]*)(.*)$")
  if c ~= "/" then
    rpath = (match(path, "^(.*/)") or "/") .. rpath
  end
  return origin .. remove_dots(rpath) .. rest
end

return M
