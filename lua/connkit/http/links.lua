--- Links in replies: the `rel="next"` target of an RFC 8288 Link header,
-- and RFC 3986 resolution of a relative reference against the URL a reply
-- came from (what a browser does with a link; base_url joining is
-- something else, see connkit.http.url).
-- @module connkit.http.links
local M = {}

local find, sub, lower = string.find, string.sub, string.lower

-- The params of one link-value (`; rel="next"; title="a; b"`) as name ->
-- value, names lower-cased, quotes removed; the first of a name counts.
local function params(s)
  local out, i, n = {}, 1, #s
  while true do
    local a, b, name = find(s, "^%s*;%s*([%w!#$&+%-.^_`|~*]+)%s*", i)
    if not a then return out end
    i = b + 1
    local v = ""
    if sub(s, i, i) == "=" then
      i = i + 1 + #(s:match("^%s*", i + 1))
      if sub(s, i, i) == '"' then
        local parts, j = {}, i + 1
        while j <= n do
          local c = sub(s, j, j)
          if c == "\\" then parts[#parts + 1] = sub(s, j + 1, j + 1); j = j + 2
          elseif c == '"' then break
          else parts[#parts + 1] = c; j = j + 1 end
        end
        v, i = table.concat(parts), j + 1
      else
        v = s:match("^[^;%s]*", i)
        i = i + #v
      end
    end
    name = lower(name)
    if out[name] == nil then out[name] = v end
  end
end

--- The target of the first link whose rel holds `rel` (case-insensitive)
-- in a Link header value (several headers joined with ", "), or nil.
-- @param header the Link header value
-- @tparam string rel the relation ("next")
-- @treturn string|nil the target (as written)
function M.find_rel(header, rel)
  if type(header) ~= "string" then return nil end
  rel = lower(rel)
  local i, n = 1, #header
  while i <= n do
    local a = find(header, "<", i, true)
    if not a then return nil end
    local b = find(header, ">", a + 1, true)
    if not b then return nil end
    local target = sub(header, a + 1, b - 1)
    -- the params run to the next comma outside a quoted string
    local j, quoted = b + 1, false
    while j <= n do
      local c = sub(header, j, j)
      if c == '"' then quoted = not quoted
      elseif c == "\\" and quoted then j = j + 1
      elseif c == "," and not quoted then break end
      j = j + 1
    end
    local p = params(sub(header, b + 1, j - 1))
    if p.rel then
      for r in lower(p.rel):gmatch("%S+") do
        if r == rel then return target end
      end
    end
    i = j + 1
  end
  return nil
end

-- RFC 3986 5.2.4: a path with its "." and ".." segments resolved.
local function remove_dots(path)
  local out = {}
  local absolute = sub(path, 1, 1) == "/"
  local segs = {}
  for seg in (path .. "/"):gmatch("([^/]*)/") do segs[#segs + 1] = seg end
  if absolute then table.remove(segs, 1) end
  local last = segs[#segs]
  for _, seg in ipairs(segs) do
    if seg == ".." then
      if #out > 0 then table.remove(out) end
    elseif seg ~= "." then
      out[#out + 1] = seg
    end
  end
  -- a path ending in "." or ".." names a directory
  if last == "." or last == ".." then out[#out + 1] = "" end
  return (absolute and "/" or "") .. table.concat(out, "/")
end

--- `ref` resolved against the absolute URL `base` (RFC 3986 section 5.2).
-- @tparam string base the absolute URL
-- @tparam string ref the reference
-- @treturn string the absolute URL
function M.resolve(base, ref)
  if find(ref, "^%a[%w+.-]*:") then return ref end
  local scheme, authority, path, query = base:match("^(%a[%w+.-]*:)//([^/?#]*)([^?#]*)(%??[^#]*)")
  if not scheme then return ref end
  if sub(ref, 1, 2) == "//" then return scheme .. ref end
  local prefix = scheme .. "//" .. authority
  if ref == "" then return prefix .. path .. query end
  local c = sub(ref, 1, 1)
  if c == "#" then return prefix .. path .. query .. ref end
  if c == "?" then return prefix .. path .. ref end
  local rpath, rest = ref:match("^([^?#]*)(.*)$")
  if sub(rpath, 1, 1) ~= "/" then
    -- merge: the base's directory, or "/" when it has no path
    local dir = path == "" and "/" or path:match("^(.*/)") or "/"
    rpath = dir .. rpath
  end
  return prefix .. remove_dots(rpath) .. rest
end

return M
