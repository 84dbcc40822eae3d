--- Checking `pagination` tables: the integration's default (checked once,
-- by connkit.integration) and a call's own (merged over the default, then
-- checked whole). Every message names the field: `pagination.cursor`.
-- @module connkit.http.paginate_check
local jsonpath = require "connkit.jsonpath"
local errors = require "connkit.errors"
local check = require "connkit.check"
local options = require "connkit.options"

local M = {}

M.TYPES = { "cursor", "next_url", "link", "offset", "page" }
local TYPE_SET = {}
for _, t in ipairs(M.TYPES) do TYPE_SET[t] = true end

M.DEFAULT_MAX_PAGES = 1000
M.MAX_CONCURRENCY = 64

-- field -> kind of value
local KIND = {
  type = "type", cursor = "path", next_url = "path", items = "path", total = "path", total_pages = "path",
  param = "name", param_in = "param_in", limit_param = "name", limit = "count", start = "start",
  max_pages = "count", concurrency = "concurrency",
}

-- the fields each type uses (beside type, items and max_pages)
local USES = {
  cursor = { cursor = true, param = true, param_in = true, limit_param = true, limit = true },
  next_url = { next_url = true, limit_param = true, limit = true },
  link = { limit_param = true, limit = true },
  offset = { param = true, param_in = true, limit_param = true, limit = true, start = true,
    total = true, total_pages = true, concurrency = true },
}
USES.page = USES.offset

local DEFAULT_PARAM = { cursor = "cursor", offset = "offset", page = "page" }
local DEFAULT_START = { offset = 0, page = 1 }

local function quoted(list)
  local q = {}
  for i, o in ipairs(list) do q[i] = '"' .. o .. '"' end
  return table.concat(q, ", ")
end

-- Checks one value through ctx.fail (the check and options helpers, so the
-- words are those of every other field); returns it, a path compiled.
local function value(ctx, k, v)
  local field = "pagination." .. k
  local kind = KIND[k]
  if kind == "type" then
    check.string(ctx, field, v, { one_of = M.TYPES })
  elseif kind == "path" then
    check.string(ctx, field, v)
    local ok, p = pcall(jsonpath.compile, v)
    if not ok then ctx.fail(field, "is not a JSON path: " .. errors.clean(tostring(p)):gsub("^JSON path '[^']*' ", "")) end
    return p
  elseif kind == "name" then
    options.field(ctx, field, v, "nonempty")
  elseif kind == "param_in" then
    check.string(ctx, field, v, { one_of = { "query", "body" } })
  elseif kind == "count" then
    options.field(ctx, field, v, "count")
  elseif kind == "concurrency" then
    options.field(ctx, field, v, "count")
    check.number(ctx, field, v, { max = M.MAX_CONCURRENCY })
  elseif kind == "start" then
    check.number(ctx, field, v, { integer = true, min = 0 }) -- (infinity is no whole number)
  end
  return v
end

-- Checks the fields of `t` one by one (unknown names, kinds); returns a
-- copy with paths compiled.
local function fields(ctx, t)
  check.table(ctx, "pagination", t)
  local out = {}
  for k, v in pairs(t) do
    if KIND[k] == nil then
      local names = {}
      for n in pairs(KIND) do names[#names + 1] = n end
      table.sort(names)
      ctx.fail("pagination." .. tostring(k), "is not a known field of pagination"
        .. options.suggestion(k, KIND) .. " (known: " .. table.concat(names, ", ") .. ")")
    end
    out[k] = value(ctx, k, v)
  end
  return out
end

-- The rules between fields, once the type is known; returns the complete
-- settings with defaults filled in.
local function whole(ctx, p)
  local fail = ctx.fail
  local ty = p.type
  if ty == nil then fail("pagination.type", "is required: one of " .. quoted(M.TYPES)) end
  local uses = USES[ty]
  for k in pairs(p) do
    if k ~= "type" and k ~= "items" and k ~= "max_pages" and not uses[k] then
      fail("pagination." .. k, ('is not used with type = "%s"'):format(ty))
    end
  end
  if ty == "cursor" and p.cursor == nil then
    fail("pagination.cursor", 'is required with type = "cursor": the JSON path of the next cursor in a reply')
  end
  if ty == "next_url" and p.next_url == nil then
    fail("pagination.next_url", 'is required with type = "next_url": the JSON path of the next URL in a reply')
  end
  if p.limit_param and not p.limit then fail("pagination.limit_param", "needs pagination.limit (the value to send)") end
  if p.total and p.total_pages then fail("pagination.total", "and pagination.total_pages: give only one") end
  if p.concurrency and p.concurrency > 1 and not (p.total or p.total_pages) then
    fail("pagination.concurrency", "needs pagination.total or pagination.total_pages (pages are fetched"
      .. " side by side only when their number is known)")
  end
  local out = {}
  for k, v in pairs(p) do out[k] = v end
  out.param = p.param or DEFAULT_PARAM[ty]
  out.param_in = p.param_in or "query"
  out.start = p.start or DEFAULT_START[ty]
  out.max_pages = p.max_pages or M.DEFAULT_MAX_PAGES
  out.concurrency = p.concurrency or 1
  return out
end

--- The integration's `pagination` (nil when absent), checked once through
-- ctx.fail. It may leave out the type (each call then gives it); when it
-- gives one, it is checked whole.
-- @tparam table ctx the check context
-- @tparam[opt] table t the pagination block
-- @treturn table|nil the settings
-- @raise naming the field
function M.definition(ctx, t)
  if t == nil then return nil end
  local p = fields(ctx, t)
  if p.type ~= nil then whole(ctx, p) end
  return p
end

--- A call's settings: its own `pagination` over the integration's, field
-- by field (a call that names another type than the integration's
-- replaces the integration's table wholly). fail(field, why) raises.
-- @tparam function fail fail(field, why)
-- @tparam[opt] table default the integration's settings
-- @tparam[opt] table own the call's pagination option
-- @treturn table the merged settings
-- @raise naming the field
function M.call(fail, default, own)
  local ctx = { fail = fail }
  local mine = own ~= nil and fields(ctx, own) or {}
  local merged = {}
  if default and (mine.type == nil or mine.type == default.type) then
    for k, v in pairs(default) do merged[k] = v end
  end
  for k, v in pairs(mine) do merged[k] = v end
  if next(merged) == nil then
    fail("pagination", "is required: the integration has no pagination default")
  end
  local settings = whole(ctx, merged)
  return settings -- (not a tail call: Lua 5.1 would lose the caller's line for an error)
end

return M
