--- The rules that say a reply refused the account's token, whatever its
-- status: refresh.on_status (a status), refresh.on_body (a value at a JSON
-- path of a JSON body) and refresh.when (a predicate over the reply). Any
-- of them triggers the one refresh and one retry of connkit.http.attempt.
-- @module connkit.http.refresh_rules
local check = require "connkit.check"
local errors = require "connkit.errors"
local jsonpath = require "connkit.jsonpath"
local cjson = require "cjson.safe"

local M = {}

--- Checks refresh.on_body and refresh.when of a definition (raising through
-- ctx, naming the field) and adds them, normalized, to `out`.
-- @tparam table ctx the check context
-- @tparam table r the refresh block as given
-- @tparam table out the normalized block, completed here
-- @treturn table out
-- @raise naming the field
function M.check(ctx, r, out)
  local ob = r.on_body
  if ob ~= nil then
    check.table(ctx, "refresh.on_body", ob)
    check.known_fields(ctx, ob, "refresh.on_body", { path = true, values = true })
    local src = check.string(ctx, "refresh.on_body.path", ob.path, { required = true })
    local ok, path = pcall(jsonpath.compile, src)
    if not ok then ctx.fail("refresh.on_body.path", "is not a JSON path: " .. tostring(path)) end
    check.table(ctx, "refresh.on_body.values", ob.values, { required = true })
    local values, n = {}, #ob.values
    for k in pairs(ob.values) do
      if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then
        ctx.fail("refresh.on_body.values", 'must be a list of strings or numbers, such as { "TOKEN_EXPIRED" }')
      end
    end
    if n == 0 then ctx.fail("refresh.on_body.values", "must not be empty") end
    for i, v in ipairs(ob.values) do
      if type(v) ~= "string" and type(v) ~= "number" then
        ctx.fail("refresh.on_body.values[" .. i .. "]", "must be a string or a number, not a " .. type(v))
      end
      values[v] = true
    end
    out.on_body = { path = path, values = values }
  end
  out.when = check.field(ctx, "refresh.when", r.when, "callable")
  return out
end

-- Whether the JSON body of `res` holds one of the values at the path. A
-- body that is not JSON, or has no such value, does not match. Values are
-- compared as written: a string with strings, a number with numbers.
local function body_matches(rule, res)
  local body = res.body
  if type(body) ~= "string" or not body:find("^%s*[{%[]") then return false end
  local doc = cjson.decode(body)
  if type(doc) ~= "table" then return false end
  local v = jsonpath.get(doc, rule.path)
  return (type(v) == "string" or type(v) == "number") and rule.values[v] == true
end

--- Whether the reply refused the token under `rules` (the integration's
-- normalized refresh block): true or false, or nil and an error (code
-- "refresh_when") when refresh.when raised: the request then ends with that
-- error (the reply is not given: whether it refused the token is unknown).
-- @tparam table rules the normalized refresh block
-- @tparam connkit.http.response.Response res the reply
-- @tparam connkit.account.Account acct the account
-- @treturn[1] boolean
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "refresh_when")
function M.refused(rules, res, acct)
  if rules.on_status[res.status] == true then return true end
  if rules.on_body and body_matches(rules.on_body, res) then return true end
  local when = rules.when
  if when then
    local ok, v = pcall(when, res)
    if not ok then
      return nil, errors.new("refresh_when", acct:_redact("refresh.when raised an error: " .. tostring(v)),
        { status = res.status })
    end
    return v and true or false
  end
  return false
end

return M
