--- Options of public functions: one table per function (name -> kind) and
-- one checker, so every function refuses a misspelled option, a wrong type,
-- a nested table where a value belongs and an absurd timeout in the same
-- words ("request: option 'timeout' must be ..."), raised at the caller's
-- line, never at a line inside connkit.
-- @module connkit.options
local core = require "connkit.core"

local M = {}

local describe = type
local getinfo = debug and debug.getinfo
local huge = math.huge

--- An RFC 7230 header field name.
M.HEADER_NAME = "^[!#$%%&'*+%-.^_`|~%w]+$"

-- The source prefix of connkit's own Lua files ("@/usr/share/lua/5.4/connkit/"):
-- frames from there are inside connkit, so an error is reported at the first
-- frame outside it (the user's line), never at a line of connkit.
local INTERNAL = getinfo and getinfo(1, "S").source:match("^(@.*[/\\])options%.lua$")

--- Raises `msg` at the user's line: the first caller outside connkit (C
-- frames such as pcall are skipped too), whatever the depth of the call.
-- Without the debug library the message carries no position at all.
-- @tparam string msg the message
-- @raise always
function M.raise(msg)
  if not INTERNAL then error(msg, 0) end
  local level, n = 2, #INTERNAL
  while true do
    local info = getinfo(level, "S")
    if not info then return error(msg, 0) end
    if info.what ~= "C" and info.source:sub(1, n) ~= INTERNAL then break end
    level = level + 1
  end
  error(msg, level)
end

--- The longest timeout taken as meant: more than a day is a mistake (a
-- value in milliseconds, a typo), refused rather than waited for.
M.MAX_SECONDS = 86400

local function finite(v) return v == v and v ~= huge and v ~= -huge end

local function seconds(v, min_ok)
  if type(v) ~= "number" then return "must be a number of seconds" end
  if v ~= v then return "must be a number of seconds, not NaN" end
  if not min_ok(v) then return nil end
  if v > M.MAX_SECONDS then
    return ("is %s seconds: more than a day (%d) is taken for a mistake"):format(core.format_number(v),
      M.MAX_SECONDS), true
  end
  return false
end

-- kind -> function(v) returning false when v fits, else why it does not
-- (and true as a second value when the type is right but not the value).
local KINDS = {}

function KINDS.string(v)
  if type(v) ~= "string" then return "must be a string" end
  return false
end

function KINDS.nonempty(v)
  if type(v) ~= "string" then return "must be a string" end
  if v == "" then return "must not be empty", true end
  return false
end

function KINDS.boolean(v)
  if type(v) ~= "boolean" then return "must be true or false" end
  return false
end

function KINDS.table(v)
  if type(v) ~= "table" then return "must be a table" end
  return false
end

function KINDS.callable(v)
  if type(v) == "function" then return false end
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__call) == "function" then return false end
  return "must be a function"
end

function KINDS.number(v)
  if type(v) ~= "number" then return "must be a number" end
  if not finite(v) then return "must be a finite number", true end
  return false
end

function KINDS.count(v) -- a whole number >= 1
  if type(v) ~= "number" then return "must be a whole number" end
  if not finite(v) or v % 1 ~= 0 or v < 1 then return "must be a whole number of at least 1", true end
  return false
end

function KINDS.bytes(v) -- a size in bytes, 1 .. 2^53
  if type(v) ~= "number" then return "must be a number of bytes" end
  if not finite(v) or v % 1 ~= 0 or v < 1 or v > 2 ^ 53 then
    return "must be a whole number of bytes from 1 to 2^53", true
  end
  return false
end

function KINDS.port(v)
  if type(v) ~= "number" then return "must be a port number" end
  if not finite(v) or v % 1 ~= 0 or v < 0 or v > 65535 then return "must be a whole number from 0 to 65535", true end
  return false
end

function KINDS.chunk_size(v) -- an SFTP transfer chunk: 4 KiB .. 16 MiB
  if type(v) ~= "number" then return "must be an integer from 4096 to 16 MiB" end
  if not finite(v) or v % 1 ~= 0 or v < 4096 or v > 16 * 1024 * 1024 then
    return "must be an integer from 4096 to 16 MiB", true
  end
  return false
end

function KINDS.mode(v) -- a file permission mode
  if type(v) ~= "number" then return "must be an integer permission mode from 0 to 4095 (0777 octal is 511)" end
  if not finite(v) or v % 1 ~= 0 or v < 0 or v > 4095 then
    return "must be an integer permission mode from 0 to 4095 (0777 octal is 511)", true
  end
  return false
end

--- A timeout: from a millisecond to a day.
function KINDS.timeout(v)
  local why, bad = seconds(v, function(x) return x >= 0.001 end)
  if why == nil then return "must be at least 0.001 seconds", true end
  return why, bad
end

--- A wait that may be 0 (poll, lock_timeout): 0 .. a day.
function KINDS.wait(v)
  local why, bad = seconds(v, function(x) return x >= 0 end)
  if why == nil then return "must be 0 or more seconds", true end
  return why, bad
end

-- A value that goes into a query, a form or a header as text.
local function scalar_why(v)
  local t = type(v)
  if t == "string" or t == "boolean" then return false end
  if t == "number" then
    if not finite(v) then return "must be a finite number", true end
    return false
  end
  return "must be a string, number or boolean"
end

-- query / form: name -> scalar, or name -> list of scalars (the key repeats).
local function pairs_of_scalars(v, name, fail)
  if type(v) ~= "table" then return "must be a table" end
  for k, x in pairs(v) do
    if type(k) ~= "string" then
      fail(name .. "[" .. tostring(k) .. "]", "is not a name: keys must be strings", true)
    end
    if type(x) == "table" then
      local n = #x
      for i, item in pairs(x) do
        if type(i) ~= "number" or i < 1 or i > n or i % 1 ~= 0 then
          fail(name .. "." .. k, "must be a value or a list of values, not a table with keys", true)
        end
        local why = scalar_why(item)
        if why then fail(("%s.%s[%d]"):format(name, k, i), why .. ", not a " .. describe(item), true) end
      end
    else
      local why, bad = scalar_why(x)
      if why then fail(name .. "." .. k, bad and why or (why .. ", not a " .. describe(x)), true) end
    end
  end
  return false
end
KINDS.query = pairs_of_scalars

-- headers: name -> string | number | false (false removes a default)
function KINDS.headers(v, name, fail)
  if type(v) ~= "table" then return "must be a table" end
  for k, x in pairs(v) do
    if type(k) ~= "string" or not k:find(M.HEADER_NAME) then
      fail(name .. "." .. tostring(k), "is not a valid header name", true)
    end
    local t = type(x)
    if t == "number" then
      if not finite(x) then fail(name .. "." .. k, "must be a finite number", true) end
    elseif t ~= "string" and x ~= false then
      fail(name .. "." .. k, "must be a string, a number or false, not a " .. describe(x), true)
    end
  end
  return false
end

-- template values (vars, parameters): name -> string | number
function KINDS.values(v, name, fail)
  if type(v) ~= "table" then return "must be a table" end
  for k, x in pairs(v) do
    if type(k) ~= "string" then fail(name .. "[" .. tostring(k) .. "]", "is not a name: keys must be strings", true) end
    local t = type(x)
    if t == "number" then
      if not finite(x) then fail(name .. "." .. k, "must be a finite number", true) end
    elseif t ~= "string" then
      fail(name .. "." .. k, "must be a string or a number, not a " .. describe(x), true)
    end
  end
  return false
end

-- follow: true (5 redirects), false, or a number of redirects
function KINDS.follow(v)
  if type(v) == "boolean" then return false end
  if type(v) ~= "number" then return "must be true, false or a number of redirects" end
  if not finite(v) or v % 1 ~= 0 or v < 0 then return "must be a whole number of redirects (0 or more)", true end
  return false
end

-- retry: a table of rules (checked where they are merged) or false
function KINDS.retry(v)
  if v == false or type(v) == "table" then return false end
  return "must be a table of retry rules or false"
end

-- rate_limit: a table of fields (checked where they are merged) or false
function KINDS.rate_limit(v)
  if v == false or type(v) == "table" then return false end
  return "must be a table of rate_limit fields or false"
end

function KINDS.any() return false end

--- Edit distance of two short strings (for "did you mean").
local function distance(a, b)
  if math.abs(#a - #b) > 2 then return 3 end
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- " (did you mean 'x'?)" for a name close to one of the schema's, or "".
-- @param name the unknown name
-- @tparam table schema the known names (as keys)
-- @treturn string the suggestion, or ""
function M.suggestion(name, schema)
  if type(name) ~= "string" then return "" end
  local best, bestd
  for known in pairs(schema) do
    local d = distance(name:lower(), known)
    if d <= 2 and d < #known and (not bestd or d < bestd or (d == bestd and known < best)) then
      best, bestd = known, d
    end
  end
  return best and (" (did you mean '" .. best .. "'?)") or ""
end

-- The fail(name, why) of each caller's name, made once: M.check runs on
-- every request, and a closure per call is garbage the request's caller
-- collects. (At most 64 names are kept; the callers pass a few literals.)
local fail_of, nfail = {}, 0
local function fail_for(who)
  local fail = fail_of[who]
  if fail then return fail end
  fail = function(name, why)
    M.raise(("%s: option '%s' %s"):format(who, name, why))
  end
  if nfail < 64 and who ~= nil then fail_of[who], nfail = fail, nfail + 1 end
  return fail
end

--- Checks the options table of a public function against its schema
-- (name -> kind: "string", "nonempty", "number", "count", "bytes", "port",
-- "chunk_size", "mode", "timeout", "wait", "boolean", "table", "callable", "query", "headers",
-- "values", "follow", "retry", "rate_limit", "any"). Raises at the
-- user's line, naming the option, for an unknown name, a wrong type, a
-- nested table where a value belongs, a negative or absurd timeout. A nil
-- `opts` is an empty table. Returns opts.
-- @tparam string who what is called ("request", "connkit.all", ...)
-- @tparam[opt] table opts the options given
-- @tparam table schema option name -> kind
-- @treturn table opts (an empty table for nil)
-- @raise naming the option
function M.check(who, opts, schema)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    M.raise(("%s: options must be a table, not a %s"):format(who, describe(opts)))
  end
  local fail = fail_for(who)
  for k, v in pairs(opts) do
    local kind = schema[k]
    if kind == nil then
      M.raise(("%s: unknown option '%s'%s"):format(who, tostring(k), M.suggestion(k, schema)))
    end
    local why, bad = KINDS[kind](v, k, fail)
    if why then fail(k, bad and why or (why .. ", not a " .. describe(v))) end
  end
  return opts
end

--- One argument of a public function (not an options table) checked as
-- `kind`; raises at the user's line naming the call and the argument.
-- Returns v.
-- @tparam string who what is called
-- @tparam string name the argument's name
-- @param v the argument
-- @tparam string kind its kind (see M.check)
-- @return v
-- @raise when v does not fit
function M.argument(who, name, v, kind)
  local function fail(n, why) M.raise(("%s: %s %s"):format(who, n, why)) end
  local why, bad = KINDS[kind](v, name, fail)
  if why then fail(name, bad and why or (why .. ", not a " .. describe(v))) end
  return v
end

--- One value of a definition or account checked as an option of `kind`
-- (see M.check), raising through ctx.fail. Returns v, or default.
-- @tparam table ctx the check context (connkit.check.context)
-- @tparam string field the field, named in the error
-- @param v the value
-- @tparam string kind its kind (see M.check)
-- @param[opt] default the value for nil
-- @return v, or default
-- @raise through ctx.fail when v does not fit
function M.field(ctx, field, v, kind, default)
  if v == nil then return default end
  local why, bad = KINDS[kind](v, field, function(name, msg) ctx.fail(name, msg) end)
  if why then ctx.fail(field, bad and why or (why .. ", not a " .. describe(v))) end
  return v
end

return M
