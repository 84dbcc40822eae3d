--- URLs for the ngx transport: an absolute http(s) URL split into what a
-- cosocket connects to and what the request line and Host header carry
-- (parsed once per URL string), and a Location value resolved against the
-- request's URL as libcurl does. Errors are (nil, code, message) with the
-- curl transport's codes and wording.
-- @module connkit.transport.ngx_url

local find, match, lower, sub, byte = string.find, string.match, string.lower, string.sub, string.byte
local concat, tonumber = table.concat, tonumber

local M = {}

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
-- @tparam string url the absolute URL
-- @treturn[1] table the parts (see parse_url above)
-- @return[2] nil
-- @treturn[2] string the error code
-- @treturn[2] string the message
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
-- @tparam string base the request's URL
-- @tparam string ref the Location value
-- @treturn string the absolute URL
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
