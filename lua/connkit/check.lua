--- Definition checking: field-by-field validation that raises errors naming
-- the field, and template compilation with placeholder checks.
-- @module connkit.check
local core = require "connkit.core"
local options = require "connkit.options"

local check = {}

--- Built-in placeholder names, filled from the account's credentials/token.
check.BUILTINS = { token = true, username = true, password = true }

local describe = type
local floor = math.floor
local tointeger, math_type = math.tointeger, math.type

--- Raises at the user's line (see connkit.options).
check.raise = options.raise
--- Checks the options of a public function (see connkit.options).
check.options = options.check
--- One definition or account value checked as an option kind, through ctx.fail.
check.field = options.field

--- A checker bound to a subject ("integration 'acmecrm'"): `fail(field, msg)`
-- raises "<subject>: <field> <msg>".
-- @tparam string subject what is checked, leading every message
-- @treturn table the context: subject, fail(field, msg)
function check.context(subject)
  local ctx = { subject = subject }
  function ctx.fail(field, msg)
    if field and field ~= "" then
      error(("%s: %s %s"):format(ctx.subject, field, msg), 0)
    end
    error(("%s: %s"):format(ctx.subject, msg), 0)
  end
  return ctx
end

local suggestion = options.suggestion

--- Raises unless every key of `t` is listed in `allowed` (a set).
-- @tparam table ctx the check context (check.context)
-- @tparam table t the table whose keys are checked
-- @tparam[opt] string prefix the name of t, put before each key's
-- @tparam table allowed the set of known names
-- @raise for an unknown key, with a "did you mean" when one is close
function check.known_fields(ctx, t, prefix, allowed)
  for k in pairs(t) do
    if not allowed[k] then
      local name = type(k) == "string" and k or ("[" .. tostring(k) .. "]")
      ctx.fail(prefix and (prefix .. "." .. name) or name,
        "is not a known field" .. (prefix and (" of " .. prefix) or "") .. suggestion(k, allowed))
    end
  end
end

--- Field type checks. Each returns the value (or the default) and raises with
-- the field named when it does not fit.
-- @tparam table ctx the check context (check.context)
-- @tparam string field the field, named in the error
-- @param v the value
-- @tparam[opt] table opts required, default, empty (allows ""), pattern
--   and pattern_msg, one_of (a list)
-- @treturn string|nil v, or the default
-- @raise when v does not fit
function check.string(ctx, field, v, opts)
  opts = opts or {}
  if v == nil then
    if opts.required then ctx.fail(field, "is required") end
    return opts.default
  end
  if type(v) ~= "string" then ctx.fail(field, "must be a string, not a " .. describe(v)) end
  if v == "" and not opts.empty then ctx.fail(field, "must not be empty") end
  if opts.pattern and not v:find(opts.pattern) then ctx.fail(field, opts.pattern_msg or "is malformed") end
  if opts.one_of then
    for _, o in ipairs(opts.one_of) do
      if v == o then return v end
    end
    local q = {}
    for i, o in ipairs(opts.one_of) do q[i] = '"' .. o .. '"' end
    ctx.fail(field, "must be " .. (#q == 2 and (q[1] .. " or " .. q[2]) or ("one of " .. table.concat(q, ", "))))
  end
  return v
end

--- A number: see check.string.
-- @tparam table ctx the check context (check.context)
-- @tparam string field the field, named in the error
-- @param v the value
-- @tparam[opt] table opts required, default, integer, min, max
-- @treturn number|nil v, or the default
-- @raise when v does not fit (NaN included)
function check.number(ctx, field, v, opts)
  opts = opts or {}
  if v == nil then
    if opts.required then ctx.fail(field, "is required") end
    return opts.default
  end
  if type(v) ~= "number" then ctx.fail(field, "must be a number, not a " .. describe(v)) end
  if v ~= v then ctx.fail(field, "must be a number, not NaN") end
  if opts.integer and v % 1 ~= 0 then ctx.fail(field, "must be a whole number") end
  if opts.min and v < opts.min then ctx.fail(field, "must be at least " .. opts.min) end
  if opts.max and v > opts.max then ctx.fail(field, "must be at most " .. opts.max) end
  return v
end

--- A boolean: see check.string.
-- @tparam table ctx the check context (check.context)
-- @tparam string field the field, named in the error
-- @param v the value
-- @tparam[opt] boolean default the value for nil
-- @treturn boolean|nil v, or the default
-- @raise when v is not a boolean
function check.boolean(ctx, field, v, default)
  if v == nil then return default end
  if type(v) ~= "boolean" then ctx.fail(field, "must be true or false, not a " .. describe(v)) end
  return v
end

--- A table: see check.string.
-- @tparam table ctx the check context (check.context)
-- @tparam string field the field, named in the error
-- @param v the value
-- @tparam[opt] table opts required
-- @treturn table|nil v
-- @raise when v is not a table
function check.table(ctx, field, v, opts)
  opts = opts or {}
  if v == nil then
    if opts.required then ctx.fail(field, "is required") end
    return nil
  end
  if type(v) ~= "table" then ctx.fail(field, "must be a table, not a " .. describe(v)) end
  return v
end

--- A list of HTTP status codes (such as refresh.on_status).
-- @tparam table ctx the check context (check.context)
-- @tparam string field the field, named in the error
-- @param v the list given
-- @tparam[opt] table default the set for nil
-- @treturn table the set of statuses (status -> true)
-- @raise for an entry that is not a status from 100 to 599
function check.statuses(ctx, field, v, default)
  if v == nil then return default end
  check.table(ctx, field, v)
  local out = {}
  for i, s in ipairs(v) do
    check.number(ctx, field .. "[" .. i .. "]", s, { integer = true, min = 100, max = 599 })
    out[s] = true
  end
  for k in pairs(v) do
    if type(k) ~= "number" then ctx.fail(field, "must be a list of status codes") end
  end
  return out
end

--- An RFC 7230 header field name.
check.HEADER_NAME = options.HEADER_NAME

--- Compiles template `str` of `kind` found at `field`; raises when it does not
-- parse or names a placeholder that is neither in `names` (a set) nor a
-- built-in. `opts.allow` is a set of extra names; `opts.any` accepts every
-- name (the caller checks them). Returns the compiled template and its names.
-- @tparam table ctx the check context (check.context)
-- @tparam string field the field, named in the error
-- @tparam string|number str the template's source
-- @tparam string kind where it goes: "raw", "url", "path", "query",
--   "form", "header"
-- @tparam table names the set of parameter names
-- @tparam[opt] table opts allow (a set of extra names), any
-- @treturn userdata the compiled template
-- @treturn table its placeholder names
-- @raise naming the field
function check.template(ctx, field, str, kind, names, opts)
  opts = opts or {}
  if type(str) == "number" then str = core.format_number(str) end
  if type(str) ~= "string" then ctx.fail(field, "must be a string, not a " .. describe(str)) end
  if kind == "header" and str:find("[\r\n%z]") then ctx.fail(field, "holds CR, LF or NUL") end
  local tpl, err = core.template(str, kind)
  if not tpl then ctx.fail(field, "is not a valid template: " .. err) end
  local used = tpl:names()
  if not opts.any then
    for _, n in ipairs(used) do
      if not (names[n] or check.BUILTINS[n] or (opts.allow and opts.allow[n])) then
        ctx.fail(field, ("uses {%s}, which is neither a declared parameter nor a built-in"
          .. " ({token}, {username}, {password})"):format(n))
      end
    end
  end
  return tpl, used
end

--- Whole-number floats (JSON numbers decoded by lua-cjson on 5.3+) turned
-- into integers, and JSON null (`null`) removed, through a decoded value.
-- @param v the decoded value (changed in place)
-- @param null the JSON null value of the decoder (cjson.null)
-- @return v
function check.from_json(v, null)
  if type(v) == "table" then
    for k, x in pairs(v) do
      if x == null then v[k] = nil else v[k] = check.from_json(x, null) end
    end
  elseif tointeger and math_type(v) == "float" and v == floor(v) then
    return tointeger(v) or v
  end
  return v
end

return check
