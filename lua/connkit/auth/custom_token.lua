--- Custom token endpoints: the `custom_token` block of a definition (a login
-- URL that answers with a token somewhere in its JSON).
-- @module connkit.auth.custom_token
local core = require "connkit.core"
local check = require "connkit.check"
local errors = require "connkit.errors"
local endpoint = require "connkit.auth.token_endpoint"
local metadata = require "connkit.auth.token_metadata"

local M = {}

local FIELDS = {
  token_url = true, token_method = true, params = true, headers = true, format = true,
  token_path = true, expires_in_path = true, ttl = true, public_credentials = true, token_metadata = true,
}

-- credentials that are not secrets unless the definition says otherwise
local DEFAULT_PUBLIC = { "username" }

-- a dotted path: names separated by single dots
local PATH = "^[%w_%-]+[%.%w_%-]*$"
local function bad_path(p)
  return p ~= nil and (p:find("%.%.") or p:find("%.$")) ~= nil
end

--- Validates the `custom_token` block; returns it normalized. Placeholders in
-- `params` and `headers` that are not parameters name credentials the
-- account must give (`credential_names`).
-- @tparam table b the custom_token block
-- @tparam function fail fail(field, message): raises naming the field
-- @tparam table env the check environment (ctx, secure_url, ...; see
--   connkit.auth.oauth2.check_definition)
-- @treturn table the normalized block
-- @raise naming the field
function M.check_definition(b, fail, env)
  local ctx = env.ctx
  check.known_fields(ctx, b, "custom_token", FIELDS)
  local out = {
    token_method = check.string(ctx, "custom_token.token_method", b.token_method, { default = "POST", one_of = { "POST", "GET" } }),
    format = check.string(ctx, "custom_token.format", b.format, { default = "form", one_of = { "form", "json" } }),
    token_path = check.string(ctx, "custom_token.token_path", b.token_path,
      { default = "access_token", pattern = PATH, pattern_msg = "must be a dotted path such as data.token" }),
    expires_in_path = check.string(ctx, "custom_token.expires_in_path", b.expires_in_path,
      { pattern = PATH, pattern_msg = "must be a dotted path such as data.ttl" }),
    ttl = check.number(ctx, "custom_token.ttl", b.ttl, { min = 1 }),
    params = {}, headers = {}, credential_names = {},
  }
  if bad_path(out.token_path) then fail("custom_token.token_path", "must be a dotted path such as data.token") end
  if bad_path(out.expires_in_path) then fail("custom_token.expires_in_path", "must be a dotted path such as data.ttl") end
  out.token_url = env.secure_url("custom_token.token_url", b.token_url)
  out.token_metadata = metadata.check_definition(ctx, "custom_token", b.token_metadata, env.names)
  for _, part in ipairs({ "params", "headers" }) do
    local t = b[part]
    if t ~= nil then
      check.table(ctx, "custom_token." .. part, t)
      for k, v in pairs(t) do
        local field = "custom_token." .. part .. "." .. tostring(k)
        if type(k) ~= "string" then fail("custom_token." .. part, "must be named by strings") end
        if part == "headers" and not k:find(check.HEADER_NAME) then fail(field, "is not a valid header name") end
        local tpl, used = env.template(field, v, part == "headers" and "header" or "raw", { any = true })
        for _, n in ipairs(used) do
          -- ({jwt}: signed from the jwt block, see connkit.auth.jwt_auth)
          if n == "jwt" and not env.names[n] then out.uses_jwt = true
          elseif not env.names[n] and n ~= "token" then out.credential_names[n] = true end
        end
        out[part][#out[part] + 1] = { name = k, template = tpl }
      end
      table.sort(out[part], function(x, y) return x.name < y.name end)
    end
  end
  -- every credential is a secret (scrubbed from every message) except the
  -- ones named here: names that help reading a message, such as a user name
  local public = b.public_credentials
  if public == nil then public = DEFAULT_PUBLIC end
  if type(public) ~= "table" then fail("custom_token.public_credentials", "must be a list of credential names") end
  out.public_credentials = {}
  for i, name in pairs(public) do
    local field = "custom_token.public_credentials[" .. tostring(i) .. "]"
    if type(i) ~= "number" or type(name) ~= "string" then
      fail("custom_token.public_credentials", "must be a list of credential names")
    end
    if b.public_credentials ~= nil and not out.credential_names[name] then
      fail(field, ("names %q, which is not a credential of custom_token.params or headers"):format(name))
    end
    out.public_credentials[name] = true
  end
  return out
end

-- The value at a dotted path ("data.token") of a decoded reply.
local function dig(t, path)
  for part in path:gmatch("[^%.]+") do
    if type(t) ~= "table" then return nil end
    local v = t[part]
    if v == nil and part:find("^%d+$") then v = t[tonumber(part)] end
    t = v
  end
  return t
end

--- Fetches a token from the custom endpoint: params (form body for POST,
-- or JSON with format = "json"; the query for GET) filled from the
-- credentials and parameters; the token at token_path; its lifetime at
-- expires_in_path (a number or numeric string; anything else there is an
-- error naming the path), else ttl, else refresh.default_ttl; at most
-- token_endpoint.MAX_LIFETIME (10 years).
-- @tparam connkit.account.Account acct the account
-- @treturn[1] table the token record
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.fetch_token(acct)
  local c = acct.integration.custom_token
  local creds = acct.credentials
  if c.uses_jwt then
    -- a new JWT for this call, next to the credentials
    local token, jerr = require("connkit.auth.jwt_auth").custom_token_jwt(acct)
    if not token then return nil, jerr end
    local vars = { jwt = token }
    for k, v in pairs(creds) do vars[k] = v end
    creds = vars
  end
  local params, headers = {}, {}
  for _, p in ipairs(c.params) do
    local v, err = acct:fill(p.template, nil, creds)
    if not v then return nil, err end
    params[p.name] = v
  end
  for _, h in ipairs(c.headers) do
    local v, err = acct:fill(h.template, nil, creds)
    if not v then return nil, err end
    headers[#headers + 1] = h.name .. ": " .. v
  end
  local url, uerr = acct:fill(c.token_url, "url")
  if not url then return nil, uerr end
  local what = "custom token endpoint"
  local fields, err = endpoint.call(acct, url, c.token_method, params, headers, what, c.format)
  if not fields then return nil, err end
  local token = dig(fields, c.token_path)
  if type(token) == "number" then token = tostring(token) end
  if type(token) ~= "string" or token == "" then
    return nil, errors.new("token_endpoint", ("%s reply has no token at %s"):format(what, c.token_path))
  end
  acct:_add_secret(token)
  local ttl, terr
  if c.expires_in_path then
    ttl, terr = endpoint.number_field(dig(fields, c.expires_in_path), c.expires_in_path, what)
    if terr then return nil, terr end
  end
  local md, merr = metadata.extract(acct, fields, what)
  if merr then return nil, merr end
  local now = core.now()
  return { access_token = token, token_type = "bearer", issued_at = now, metadata = md,
    expires_at = endpoint.expires_at(now, ttl, nil, c.ttl or acct.integration.refresh.default_ttl) }
end

return M
