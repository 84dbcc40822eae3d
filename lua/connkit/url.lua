--- URL helpers: joining a relative URL to base_url, adding a query string,
-- origins (for redirects), a URL fit for messages, and k=v&k=v encoding.
-- @module connkit.url
local core = require "connkit.core"

local raise = require("connkit.check").raise

local find, sub, concat = string.find, string.sub, table.concat
local format_number = core.format_number

local M = {}


--- True for a URL with a scheme ("https://...").
function M.is_absolute(url)
  return find(url, "^%a[%w+.-]*://") ~= nil
end

-- base_url and a relative URL joined by one "/" (not RFC 3986 resolution:
-- "/contacts" keeps the base's path, which is what an API client means).
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
function M.origin(url)
  local scheme, auth = url:match("^(%a[%w+.-]*)://([^/?#]*)")
  if not scheme then return nil end
  scheme = scheme:lower()
  auth = auth:gsub("^.*@", ""):lower()
  if not auth:find(":%d+$") then
    auth = auth .. (scheme == "https" and ":443" or scheme == "http" and ":80" or "")
  end
  return scheme .. "://" .. auth
end

-- A URL fit for an error message: origin and path, no query or userinfo.
function M.safe_url(url)
  local o = M.origin(url)
  if not o then return "(relative URL)" end
  local path = url:match("^%a[%w+.-]*://[^/?#]*([^?#]*)") or ""
  return o .. path
end

-- k=v&k=v, keys sorted; a list value repeats its key. Numbers are written
-- as templates write them (3.0 from JSON as "3").
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
