-- Fuzz target: csrc/template.c (core.template, template:render,
-- core.escape, core.format_number).
-- Input: one byte of flags (kind = low 3 bits, bit 3: numeric-looking values
-- go in as numbers), then the template source and the values, separated by
-- NUL bytes; the values go to the placeholders in order of appearance.
-- Oracles: escaping decodes back to the value and writes only unreserved
-- characters and %XX (and + in a form); a rendered template equals a render
-- written here from the source (so no raw "/?#" inside a path segment
-- value); a header render holds no CR, LF or NUL, and a header value is
-- refused exactly when it holds one; a number reads back as itself.
local core = require "connkit.core"

local KINDS = { "raw", "header", "form", "query", "path", "url", "path", "query" }

local function decode(s, ctx)
  if ctx == "form" then s = s:gsub("%+", " ") end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function check_escape(v)
  for _, ctx in ipairs({ "path", "query", "form" }) do
    local e = core.escape(v, ctx)
    local stripped = e:gsub("%%%x%x", "")
    assert(not stripped:find(ctx == "form" and "[^%w%-%._~+]" or "[^%w%-%._~]"),
      ctx .. ": escaped value holds a reserved character: " .. e)
    assert(decode(e, ctx) == v, ctx .. ": escaping does not decode back")
  end
end

-- The render of source written independently of template.c: "{{"/"}}" are
-- braces, "{name}" the value escaped for ctx_of(name).
local function reference(source, values, ctx_of, uses)
  local out, i = {}, 1
  while i <= #source do
    local c = source:sub(i, i)
    if (c == "{" or c == "}") and source:sub(i + 1, i + 1) == c then
      out[#out + 1] = c
      i = i + 2
    elseif c == "{" then
      local j = source:find("}", i, true)
      local name = source:sub(i + 1, j - 1)
      uses[name] = (uses[name] or 0) + 1
      local v, ctx = tostring(values[name]), ctx_of(name)
      if type(values[name]) == "number" then v = core.format_number(values[name]) end
      if ctx == "path" or ctx == "query" or ctx == "form" then v = core.escape(v, ctx) end
      out[#out + 1] = v
      i = j + 1
    else
      out[#out + 1] = c
      i = i + 1
    end
  end
  return table.concat(out)
end

return function(data)
  if #data < 1 then return end
  local flags = data:byte(1)
  local kind = KINDS[(flags & 7) + 1]
  local parts = {}
  for p in (data:sub(2) .. "\0"):gmatch("(.-)%z") do parts[#parts + 1] = p end
  local source = parts[1]
  for i = 2, #parts do check_escape(parts[i]) end

  local t, err = core.template(source, kind)
  if not t then
    assert(type(err) == "string" and err ~= "", "a refused template needs a message")
    return
  end
  local names = t:names()
  local values = {}
  for i, name in ipairs(names) do
    local v = parts[i + 1] or ""
    local n = tonumber(v)
    if flags & 8 ~= 0 and n and n == n and n ~= math.huge and n ~= -math.huge then
      assert(tonumber(core.format_number(n)) == n, "number does not read back: " .. v)
      v = n
    end
    values[name] = v
  end

  local s, reason, name = t:render(values)
  assert(reason ~= "missing", "missing reported with every value given")
  if kind == "header" then
    local bad = false
    for _, v in pairs(values) do
      if tostring(v):find("[\r\n%z]") then bad = true end
    end
    assert((s == nil) == bad, "a header value is refused exactly when it holds CR, LF or NUL")
    -- (the source is the integration's own text: only values are hostile)
    if s and not source:find("[\r\n%z]") then
      assert(not s:find("[\r\n%z]"), "CR, LF or NUL in a rendered header")
    end
  end
  if not s then
    assert(reason == "invalid" or reason == "dots", "unknown reason " .. tostring(reason))
    assert(values[name] ~= nil, "the refusal names no placeholder of the template")
    return
  end
  local ctxs, uses = t:contexts(), {}
  local want = reference(source, values, function(n) return ctxs[n] or kind end, uses)
  -- (a name used twice in a url template has one context in contexts())
  if kind == "url" then
    for _, c in pairs(uses) do if c > 1 then return end end
  end
  assert(s == want, ("render differs from the reference:\n got  %q\n want %q"):format(s, want))
end
