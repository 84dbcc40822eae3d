--- The reply side of HTTP/1.1 on a connected cosocket, for the ngx
-- transport: the status line and header block, then the body (counted
-- bytes, chunks, or up to the close) read with cosocket reads under the time
-- left, and a compressed body decoded. Errors are (nil, code, message) with
-- the curl transport's codes and wording.
-- @module connkit.transport.ngx_reply
local core = require "connkit.core"

local find, match, lower, sub = string.find, string.match, string.lower, string.sub
local concat, tonumber, floor, ceil = table.concat, tonumber, math.floor, math.ceil

local M = {}

-- what libcurl caps the header block at (a longer one is a broken reply)
local HEAD_MAX = 100 * 1024
-- the size of each read of a body that runs until the connection closes
local READ_CHUNK = 65536

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
-- @param sock the connected cosocket
-- @tparam table st the transfer's state
-- @tparam string method the request's method
-- @tparam integer limit the body bytes allowed
-- @tparam[opt] table sink the sink of a streamed body
-- @treturn[1] table the reply
-- @return[2] nil
-- @treturn[2] string the error code
-- @treturn[2] string the message
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
-- @tparam string body the body as sent
-- @tparam string encoding the Content-Encoding value
-- @tparam integer max the most bytes out
-- @treturn[1] string the decoded body
-- @return[2] nil
-- @treturn[2] string the error code
-- @treturn[2] string the message
function M.decode(body, encoding, max)
  local e = lower(match(encoding, "^%s*(.-)%s*$"))
  if e == "" or e == "identity" or body == "" then return body end
  if e == "gzip" or e == "x-gzip" or e == "deflate" then return core.inflate(body, max) end
  return nil, "http", ("Unrecognized content encoding type '%s': the ngx transport decodes deflate and gzip"):format(e)
end

return M
