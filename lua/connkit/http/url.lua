--- URL helpers: joining a relative URL to base_url, adding a query string,
-- origins (where credentials may go; redirects), the checks of a
-- definition's URLs (scheme, secure token endpoints, allowed_origins), a URL
-- fit for messages, and k=v&k=v encoding.
-- @module connkit.http.url
local core = require "connkit.core"

local raise = require("connkit.check").raise

local find, sub, concat = string.find, string.sub, table.concat
local format_number = core.format_number

local M = {}


--- True for a URL with a scheme ("https://...").
-- @tparam string url the URL
-- @treturn boolean
function M.is_absolute(url)
  return find(url, "^%a[%w+.-]*://") ~= nil
end

--- base_url and a relative URL joined by one "/" (not RFC 3986 resolution:
-- "/contacts" keeps the base's path, which is what an API client means).
-- @tparam string base the base URL
-- @tparam string url the relative URL ("", "/x", "x", "?q", "#f")
-- @treturn string the joined URL
function M.join(base, url)
  if url == "" then return base end
  local c = sub(url, 1, 1)
  if c == "?" or c == "#" then return base .. url end
  local slash_end = sub(base, -1) == "/"
  if c == "/" then
    return slash_end and (base .. sub(url, 2)) or (base .. url)
  end
  return slash_end and (base .. url) or (base .. "/" .. url)
end

--- url with the query string q added (before any fragment).
-- @tparam string url the URL
-- @tparam string q the encoded query string ("" adds nothing)
-- @treturn string the URL
function M.add_query(url, q)
  if q == "" then return url end
  local frag = ""
  local h = find(url, "#", 1, true)
  if h then url, frag = sub(url, 1, h - 1), sub(url, h) end
  local last = sub(url, -1)
  if find(url, "?", 1, true) then
    if last ~= "?" and last ~= "&" then url = url .. "&" end
  else
    url = url .. "?"
  end
  return url .. q .. frag
end

--- scheme://host:port of a URL, lower-cased, with the default port filled in.
-- @tparam string url the URL
-- @treturn string|nil the origin, or nil for a URL without scheme or host
function M.origin(url)
  local scheme, auth = url:match("^(%a[%w+.-]*)://([^/?#]*)")
  if not scheme then return nil end
  scheme = scheme:lower()
  -- (an empty port is the default one, as curl reads it)
  auth = auth:gsub("^.*@", ""):gsub(":$", ""):lower()
  -- no host ("https:///x"): curl would take the path's first segment as the
  -- host, so this URL has no origin to compare
  if auth == "" or auth:find("^:") then return nil end
  if not auth:find(":%d+$") then
    auth = auth .. (scheme == "https" and ":443" or scheme == "http" and ":80" or "")
  end
  return scheme .. "://" .. auth
end

-- The host of an authority ("user@[::1]:8443" -> "::1"), lower-case.
local function host_of(authority)
  local a = authority:gsub("^.*@", ""):lower()
  local v6 = a:match("^%[([^%]]*)%]")
  if v6 then return v6 end
  return (a:gsub(":%d*$", ""))
end

--- True for a loopback host: localhost, ::1 or an address in 127.0.0.0/8.
-- @tparam string host the host name or address
-- @treturn boolean
function M.is_loopback(host)
  if host == "localhost" or host == "::1" then return true end
  local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  return a == "127" and tonumber(b) <= 255 and tonumber(c) <= 255 and tonumber(d) <= 255
end

-- "https://host[:port]" with nothing after it but an optional "/"
local ORIGIN_SHAPE = "^%a[%w+.-]*://[^/?#@]+/?$"

-- What is wrong with a URL of a definition (nil when nothing is). secure:
-- a credential-bearing endpoint, where http:// needs a loopback host or
-- allow_insecure_http. host: the host to judge, or nil when not known yet.
local function url_problem(url, opts, host)
  local scheme = url:match("^(%a[%w+.-]*)://")
  if not scheme then return "must be an absolute URL starting with https:// (or http://)" end
  scheme = scheme:lower()
  if scheme ~= "https" and scheme ~= "http" then
    return ("must be an https:// (or http://) URL, not %s://"):format(scheme)
  end
  local authority = url:match("^%a[%w+.-]*://([^/?#]*)")
  if authority:gsub("^.*@", ""):find("^:?%d*$") then return "must name a host after " .. scheme .. "://" end
  if opts.origin and not url:find(ORIGIN_SHAPE) then
    return "must be an origin: scheme://host[:port], with no path, query or user name"
  end
  if opts.secure and scheme == "http" and not opts.insecure_ok and host and not M.is_loopback(host) then
    return "uses http:// to a host that is not a loopback address: credentials would travel in clear"
      .. " (use https://, or set allow_insecure_http = true for a test rig or an internal network)"
  end
end

--- Checks the source of a URL template of a definition (field, source,
-- opts { secure, origin, insecure_ok }) and raises naming the field. What
-- placeholders hide (a leading "{base}", a host "{serverName}" under http)
-- cannot be judged yet: then it returns true, and the account checks the
-- rendered URL (M.check_rendered) when it is created.
-- @tparam table ctx the check context
-- @tparam string field the field, for the error
-- @tparam string src the template's source
-- @tparam table opts secure, origin, insecure_ok
-- @treturn boolean true when the rendered URL must be checked
-- @raise naming the field
function M.check_definition(ctx, field, src, opts)
  if find(src, "^{[^{]") then return true end -- a URL prefix placeholder: judged when rendered
  local authority = src:match("^%a[%w+.-]*://([^/?#]*)")
  -- (a placeholder for the port alone leaves the host known)
  if authority then authority = authority:gsub(":{[%w_]+}$", ":0") end
  local host_known = authority ~= nil and not find(authority, "[{}]")
  local problem = url_problem(src, opts, host_known and host_of(authority) or nil)
  if problem then ctx.fail(field, problem) end
  -- (https:// is fine whatever the host; http:// depends on the host)
  return opts.secure and not opts.insecure_ok and not host_known and src:match("^(%a+):"):lower() == "http"
end

--- Checks a URL rendered at account creation; raises naming the field.
-- @tparam table ctx the check context
-- @tparam string field the field, for the error
-- @tparam string url the rendered URL
-- @tparam table opts secure, origin, insecure_ok
-- @raise naming the field
function M.check_rendered(ctx, field, url, opts)
  local authority = url:match("^%a[%w+.-]*://([^/?#]*)")
  local problem = url_problem(url, opts, authority and host_of(authority))
  -- (only the origin is shown: the rest may hold parameter values)
  if problem then ctx.fail(field, ("(%s) %s"):format(M.origin(url) or "rendered", problem)) end
end

--- At account creation: renders and checks the URLs the definition could
-- not judge, and returns the set of origins the account's credentials and
-- request parameters may go to (base_url's and allowed_origins'), or false
-- when the integration sends none. fill(field, template) renders or raises.
-- @tparam connkit.account.Account acct the account being created
-- @tparam table ctx the check context
-- @tparam function fill fill(field, template) -> string
-- @treturn table|boolean the set of origins, or false
-- @raise naming the field
function M.account_origins(acct, ctx, fill)
  local integ = acct.integration
  for _, c in ipairs(integ.url_checks) do
    M.check_rendered(ctx, c.field, fill(c.field, c.template), c)
  end
  if not integ.sends_credentials then return false end
  local set = {}
  if acct._base then set[M.origin(acct._base)] = true end
  for i, tpl in ipairs(integ.allowed_origins) do
    set[M.origin(fill("allowed_origins[" .. i .. "]", tpl))] = true
  end
  return set
end

--- A URL fit for an error message: origin and path, no query or userinfo.
-- @tparam string url the URL
-- @treturn string origin and path, or "(relative URL)"
function M.safe_url(url)
  local o = M.origin(url)
  if not o then return "(relative URL)" end
  local path = url:match("^%a[%w+.-]*://[^/?#]*([^?#]*)") or ""
  return o .. path
end

--- k=v&k=v, keys sorted; a list value repeats its key. Numbers are written
-- as templates write them (3.0 from JSON as "3").
-- @tparam table t name -> value (string, number, boolean, or a list of them)
-- @tparam string how the escaping: "query" or "form"
-- @tparam string field the option's name, for the error
-- @treturn string the encoded pairs
-- @raise for a key that is not a string or a value of the wrong type
function M.encode_pairs(t, how, field)
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= "string" then raise(("%s: keys must be strings"):format(field)) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local out = {}
  local function add(k, v)
    local tv = type(v)
    if tv == "number" then v = format_number(v)
    elseif tv == "boolean" then v = tostring(v)
    elseif tv ~= "string" then raise(("%s.%s must be a string, number or boolean"):format(field, k)) end
    out[#out + 1] = core.escape(k, how) .. "=" .. core.escape(v, how)
  end
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "table" then
      for _, x in ipairs(v) do add(k, x) end
    else
      add(k, v)
    end
  end
  return concat(out, "&")
end

return M
