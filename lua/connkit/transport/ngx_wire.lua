--- The request side of HTTP/1.1 for the ngx transport: the request head
-- as libcurl would write it (the same header line semantics) and the body
-- after it, as strings for one sock:send. The URL parts come from
-- connkit.transport.ngx_url; the reply is read by connkit.transport.ngx_reply.
-- Errors are (nil, code, message) with the curl transport's codes and wording.
-- @module connkit.transport.ngx_wire

local find, match, lower = string.find, string.match, string.lower

local M = {}

--- The Accept-Encoding line for decompress (what core.inflate decodes).
M.ACCEPT_ENCODING = "Accept-Encoding: deflate, gzip"

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
-- @tparam table spec the request (method, header_lines, body)
-- @tparam table u the URL parts (connkit.transport.ngx_url)
-- @tparam boolean decompress ask for a compressed reply
-- @tparam[opt] table mp the multipart body
-- @treturn[1] table the strings to send
-- @return[2] nil
-- @treturn[2] string the error code
-- @treturn[2] string the message
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

return M
