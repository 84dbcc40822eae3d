--- Verifying an account: the integration's `verify = { method, url,
-- expect, headers, query }` block, and `account:verify()`, one request
-- through the normal request path (token fetch, refresh rules, retries, any
-- transport) whose status must be one of `expect`.
-- @module connkit.account_verify
local check = require "connkit.check"
local errors = require "connkit.errors"
local hooks = require "connkit.hooks"
local urls = require "connkit.http.url"

local M = {}

local FIELDS = { method = true, url = true, expect = true, headers = true, query = true }
local METHOD = "^[!#$%%&'*+%-.^_`|~%w]+$"

--- How much of a refused reply's body an error quotes (secrets scrubbed).
M.EXCERPT = 200

--- Checks the `verify` block of a definition (raises naming the field);
-- returns the block as the account uses it, or nil when there is none.
-- @tparam table ctx the check context (connkit.check.context)
-- @tparam table|nil v the `verify` block
-- @tparam table names the parameter names the templates may use
-- @treturn table|nil `{ method, url, expect (status set), headers, query }`
-- @raise naming the field
function M.check_definition(ctx, v, names)
  if v == nil then return nil end
  check.table(ctx, "verify", v)
  check.known_fields(ctx, v, "verify", FIELDS)
  local method = check.string(ctx, "verify.method", v.method, { default = "GET" })
  if not method:find(METHOD) then ctx.fail("verify.method", "must be an HTTP method name") end
  check.string(ctx, "verify.url", v.url, { required = true })
  check.template(ctx, "verify.url", v.url, "url", names)
  local expect = check.statuses(ctx, "verify.expect", v.expect, { [200] = true })
  if next(expect) == nil then ctx.fail("verify.expect", "must list at least one status") end
  local out = { method = method:upper(), url = v.url, expect = expect }
  for _, part in ipairs({ "headers", "query" }) do
    local t = v[part]
    if t ~= nil then
      check.table(ctx, "verify." .. part, t)
      for k, x in pairs(t) do
        local field = "verify." .. part .. "." .. tostring(k)
        if type(k) ~= "string" or k == "" then ctx.fail(field, "must be named by a string") end
        if part == "headers" and not k:find(check.HEADER_NAME) then ctx.fail(field, "is not a valid header name") end
        if type(x) ~= "string" and type(x) ~= "number" then ctx.fail(field, "must be a string or a number") end
      end
      out[part] = t
    end
  end
  return out
end

-- The expected statuses, in order, for a message.
local function listed(set)
  local l = {}
  for s in pairs(set) do l[#l + 1] = s end
  table.sort(l)
  return table.concat(l, ", ")
end

--- Checks that the account works: sends the integration's `verify`
-- request (see the README, "Verifying an account"). Returns true and the
-- response, or nil and an error: the request's own error (no reply), or
-- code "verify" with `status` and `excerpt` (the first 200 characters of
-- the body, secrets replaced by "***") when the status is not expected.
-- Raises when the integration has no `verify` block.
-- @tparam connkit.account.Account acct the account
-- @treturn[1] boolean true
-- @treturn[1] connkit.http.response.Response the response
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
-- @raise when the integration has no verify block
function M.verify(acct)
  local v = acct.integration.verify
  if not v then
    check.raise(("account '%s': verify() needs a verify block in integration '%s', e.g."
      .. ' verify = { url = "/me", expect = { 200 } }'):format(tostring(acct.id), acct.integration.key))
  end
  local req, err = acct:prepare { method = v.method, url = v.url, headers = v.headers, query = v.query }
  local res
  if req then res, err = req:send() end
  if not res then
    hooks.verified(acct, err)
    return nil, err
  end
  if v.expect[res.status] then
    hooks.verified(acct, nil)
    return true, res
  end
  local body = res.body or ""
  local excerpt, cut = errors.excerpt(body, M.EXCERPT, acct._secrets)
  excerpt = excerpt:gsub("%c", "?")
  err = errors.new("verify", acct:_redact(("verify: %s %s answered %d, expected %s: %s%s"):format(v.method,
    urls.safe_url(req.url), res.status, listed(v.expect),
    body == "" and "(empty body)" or excerpt, cut and "..." or "")),
    { status = res.status, excerpt = excerpt })
  hooks.verified(acct, err)
  return nil, err
end

return M
