--- Token metadata: values of a token reply that fill parameters
-- (`oauth2.token_metadata` / `custom_token.token_metadata`, parameter name
-- <- JSON path, e.g. { instanceUrl = "instance_url" }). The values are kept
-- in the token record (field `metadata`, so a shared store shares them),
-- read again from every new token (a new value replaces the old, a missing
-- one keeps it), and fill `{name}` in every template: what the account
-- renders once (base_url, allowed_origins, request_parameters) is rendered
-- again when a value changes. A parameter filled this way may be left
-- without a value at account creation: until the first token brings it,
-- the account's static parts are not rendered and a request fetches the
-- token first (in prepare).
-- @module connkit.auth.token_metadata
local check = require "connkit.check"
local errors = require "connkit.errors"
local jsonpath = require "connkit.jsonpath"
local cjson = require "cjson.safe"

local M = {}

--- Checks a block's `token_metadata` (raising through ctx, naming the
-- field): a table of declared parameter names to JSON paths. Returns the
-- sorted list { { name =, path = compiled } }, or nil when absent.
-- @tparam table ctx the check context
-- @tparam string block the block's name ("oauth2", "custom_token")
-- @tparam[opt] table tm the token_metadata table
-- @tparam table names the declared parameter names
-- @treturn table|nil the list
-- @raise naming the field
function M.check_definition(ctx, block, tm, names)
  if tm == nil then return nil end
  local field = block .. ".token_metadata"
  check.table(ctx, field, tm)
  local out = {}
  for name, src in pairs(tm) do
    if type(name) ~= "string" then
      ctx.fail(field, 'must map parameter names to JSON paths, such as { instanceUrl = "instance_url" }')
    end
    local f = field .. "." .. name
    if not names[name] then
      ctx.fail(f, ("names {%s}, which is not a declared parameter: declare it in parameters"):format(name))
    end
    check.string(ctx, f, src)
    local ok, path = pcall(jsonpath.compile, src)
    if not ok then ctx.fail(f, "is not a JSON path: " .. tostring(path)) end
    out[#out + 1] = { name = name, path = path }
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

--- The integration's token metadata list, or nil.
-- @tparam connkit.integration.Integration integ the integration
-- @treturn table|nil the list { { name =, path = } }
function M.of(integ)
  local block = integ.oauth2 or integ.custom_token
  return block and block.token_metadata
end

--- The set of parameter names filled from token replies (empty when none).
-- @tparam connkit.integration.Integration integ the integration
-- @treturn table the set of names
function M.names(integ)
  local set = {}
  for _, m in ipairs(M.of(integ) or {}) do set[m.name] = true end
  return set
end

--- The metadata of a token reply (decoded fields): { name = value } with
-- the values found (strings or numbers), or nil when the integration has
-- none; nil and an error (code "token_endpoint") for a value that is not a
-- string or a number. Values of secret parameters become secrets.
-- @tparam connkit.account.Account acct the account
-- @tparam table fields the reply's fields
-- @tparam string what the endpoint's name in messages
-- @treturn[1] table|nil name -> value, or nil
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.extract(acct, fields, what)
  local list = M.of(acct.integration)
  if not list then return nil end
  local md = {}
  for _, m in ipairs(list) do
    local v = jsonpath.get(fields, m.path)
    if v == cjson.null then v = nil end
    if v ~= nil then
      if type(v) ~= "string" and type(v) ~= "number" then
        return nil, errors.new("token_endpoint", ("%s reply: %s (token_metadata.%s) is a %s, not a string or a number")
          :format(what, tostring(m.path), m.name, type(v) == "boolean" and "boolean" or "JSON object or array"))
      end
      if acct.integration.secret_parameters[m.name] then acct:_add_secret(v) end
      md[m.name] = v
    end
  end
  return md
end

--- A fresh record's metadata completed from the old record's (a refresh
-- reply often repeats only some fields).
-- @tparam table old the old record
-- @tparam table fresh the new record (changed here)
function M.merge(old, fresh)
  if type(old.metadata) ~= "table" then return end
  local md = {}
  for k, v in pairs(old.metadata) do md[k] = v end
  for k, v in pairs(fresh.metadata or {}) do md[k] = v end
  fresh.metadata = md
end

-- The account's parameter values with the record's metadata over them, and
-- whether anything changed.
local function values_with(acct, rec)
  local md = type(rec.metadata) == "table" and rec.metadata or {}
  local values, changed = {}, false
  for k, v in pairs(acct._values) do values[k] = v end
  for _, m in ipairs(M.of(acct.integration)) do
    local v = md[m.name]
    if (type(v) == "string" or type(v) == "number") and values[m.name] ~= v then
      values[m.name], changed = v, true
    end
  end
  return values, changed
end

-- Renders the account's static parts (connkit.account's render_static) with
-- `values` on a stand-in of the account: the stand-in, or nil and an error
-- (code "token_endpoint") naming the field the value cannot fill.
local function render(acct, values)
  local standin = setmetatable({ _values = values }, { __index = acct })
  local ctx = check.context(("account '%s': token_metadata"):format(tostring(acct.id)))
  local ok, err = pcall(require("connkit.account").render_static, standin, ctx)
  if not ok then
    return nil, errors.new("token_endpoint", "a value from the token reply cannot be used: "
      .. acct:_redact(errors.clean(tostring(err))))
  end
  return standin
end

local function missing(acct, values)
  for _, m in ipairs(M.of(acct.integration)) do
    if values[m.name] == nil then return m end
  end
end

--- Whether the record's metadata can be used (checked before a record is
-- stored): true, or nil and an error.
-- @tparam connkit.account.Account acct the account
-- @tparam table rec the record
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.check_record(acct, rec)
  if not M.of(acct.integration) then return true end
  local values, changed = values_with(acct, rec)
  if not changed or missing(acct, values) then return true end
  local ok, err = render(acct, values)
  if not ok then return nil, err end
  return true
end

--- Makes the record's metadata the account's parameter values and renders
-- the account's static parts again when one changed (before the token line
-- is rebuilt). Returns true, or nil and an error (nothing changed then).
-- @tparam connkit.account.Account acct the account
-- @tparam table rec the record
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.apply(acct, rec)
  if not M.of(acct.integration) then return true end
  local values, changed = values_with(acct, rec)
  if not changed and not acct._meta_pending then return true end
  if missing(acct, values) then return true end -- still waiting for a value
  local standin, err = render(acct, values)
  if not standin then return nil, err end
  for _, m in ipairs(M.of(acct.integration)) do
    local v = values[m.name]
    acct._values[m.name] = v
    if acct.integration.secret_parameters[m.name] then acct:_add_secret(v) end
  end
  acct._base, acct._origins = standin._base, standin._origins
  acct._static_lines, acct._static_query = standin._static_lines, standin._static_query
  acct._abs_urls, acct._foreign_urls = nil, nil -- URLs joined to the old base_url
  acct._meta_pending = nil
  return true
end

--- At prepare: a request under the account's base_url remembers that base,
-- so that M.rebase can move it when a new token brings another one.
-- @tparam connkit.http.request.Request req the request
-- @tparam connkit.account.Account acct the account
function M.mark(req, acct)
  local base = acct._base
  if base and req._url_noauth:sub(1, #base) == base then req._base_used = base end
end

--- Before a request is (re)finalized (a new token, the retry after a
-- refused one, a cached request sent again): a request joined to an older
-- base_url is moved under the current one.
-- @tparam connkit.http.request.Request req the request
-- @tparam connkit.account.Account acct the account
function M.rebase(req, acct)
  local old, new = req._base_used, acct._base
  if old == new or not new then return end
  local url = req._url_noauth
  if url:sub(1, #old) == old then req._url_noauth = new .. url:sub(#old + 1) end
  req._base_used = new
end

--- At account creation: true when a metadata parameter has no value yet
-- (the static parts then wait for the first token).
-- @tparam connkit.account.Account acct the account
-- @treturn boolean
function M.pending(acct)
  local list = M.of(acct.integration)
  return list ~= nil and missing(acct, acct._values) ~= nil
end

--- Before a request of an account still waiting for its metadata: the
-- token is fetched first (and renewed once when the token in use came
-- without the values, such as one stored before token_metadata was
-- added). True, or nil and an error.
-- @tparam connkit.account.Account acct the account
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.first_token(acct)
  local tokens = require "connkit.auth.tokens"
  local ok, err = tokens.ensure(acct)
  if ok and acct._meta_pending and acct._renewal == nil then ok, err = tokens.renew(acct, true, nil) end
  if not ok then return nil, err end
  if acct._meta_pending then
    local m = missing(acct, acct._values)
    if m then
      return nil, errors.new("template", ("no value for {%s}: the token reply has none at %s (token_metadata.%s)")
        :format(m.name, tostring(m.path), m.name))
    end
    return nil, errors.new("template", "the account's templates are not rendered yet")
  end
  return true
end

return M
