--- A self-signed JWT as the credential: the `jwt` block of a definition.
-- Three users of one block: `auth = "jwt"` (the JWT is the bearer token,
-- e.g. App Store Connect), `oauth2.grant_type = "jwt_bearer"` (RFC 7523
-- 2.1: the JWT is the assertion exchanged at the token endpoint, e.g. Google
-- service accounts) and `{jwt}` in a custom_token header or parameter
-- (e.g. GitHub App installation tokens). Each use signs a new JWT: claims
-- from templates, `iat` and `exp` (iat + ttl) added, `jti` on request.
-- @module connkit.auth.jwt_auth
local core = require "connkit.core"
local check = require "connkit.check"
local errors = require "connkit.errors"
local jwt = require "connkit.auth.jwt"
local signing_key = require "connkit.auth.signing_key"

local M = {}

--- The grant_type of RFC 7523 2.1.
M.GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"

local FIELDS = { alg = true, key = true, key_file = true, key_password = true, secret = true, key_id = true,
  claims = true, ttl = true, jti = true, backdate = true }
local KEY_FIELDS = { key = "key", key_file = "key_file", password = "key_password", secret = "secret",
  kid = "key_id", alg = "alg" }
-- claims connkit sets itself, and the field that sets each
local SET_BY = { iat = "jwt.ttl and jwt.backdate", exp = "jwt.ttl", jti = "jwt.jti = true" }

--- Default lifetime of a JWT in seconds (GitHub allows 10 minutes at most,
-- App Store Connect 20, Google 60).
M.DEFAULT_TTL = 300

-- A claim value: a string is a template, a number or boolean is as is, a
-- table is a list or an object of those (aud may be a list).
local function check_claim(ctx, field, v, names, depth)
  local t = type(v)
  if t == "string" then return { template = check.template(ctx, field, v, "raw", names) } end
  if t == "number" or t == "boolean" then return { value = v } end
  if t ~= "table" or depth > 4 then ctx.fail(field, "must be a string, a number, a boolean, or a table of those") end
  local out = { list = v[1] ~= nil or next(v) == nil, entries = {} }
  for k, x in pairs(v) do
    if out.list ~= (type(k) == "number") then ctx.fail(field, "must be a list or an object, not both") end
    out.entries[#out.entries + 1] = { name = k, claim = check_claim(ctx, field .. "." .. tostring(k), x, names, depth + 1) }
  end
  table.sort(out.entries, function(a, b)
    if type(a.name) == type(b.name) then return a.name < b.name end
    return type(a.name) == "number"
  end)
  return out
end

-- Who may use the block (a message naming them when it is misplaced).
local function users(def, integ)
  if integ.auth == "jwt" then return "auth" end
  if integ.auth == "oauth2" and integ.oauth2.grant_type == "jwt_bearer" then return "jwt_bearer" end
  if integ.auth == "custom_token" and integ.custom_token.uses_jwt then return "custom_token" end
  return nil
end

--- Validates the `jwt` block of definition `def` for integration `integ`
-- (its auth blocks already checked); returns it normalized, or nil when
-- there is none. It is required by auth = "jwt", oauth2.grant_type =
-- "jwt_bearer" and a custom_token that uses {jwt}, and refused elsewhere.
-- @tparam table ctx the check context
-- @tparam table def the definition
-- @tparam table integ the integration being built
-- @tparam table names the parameter names
-- @treturn table|nil the normalized block
-- @raise naming the field
function M.check_definition(ctx, def, integ, names)
  local b = def.jwt
  local use = users(def, integ)
  if b == nil then
    if use == "auth" then ctx.fail("jwt", 'is required with auth = "jwt"') end
    if use == "jwt_bearer" then ctx.fail("jwt", 'is required with oauth2.grant_type = "jwt_bearer" (the assertion\'s claims and key)') end
    if use == "custom_token" then ctx.fail("jwt", "is required: custom_token uses {jwt}") end
    return nil
  end
  if not use then
    ctx.fail("jwt", 'is only for auth = "jwt", oauth2.grant_type = "jwt_bearer", or a custom_token that uses {jwt}')
  end
  check.table(ctx, "jwt", b)
  check.known_fields(ctx, b, "jwt", FIELDS)
  local out = {
    signer = signing_key.check_definition(ctx, b, "jwt", KEY_FIELDS, names, { required = true }),
    ttl = check.number(ctx, "jwt.ttl", b.ttl, { default = M.DEFAULT_TTL, min = 1, max = 86400 }),
    backdate = check.number(ctx, "jwt.backdate", b.backdate, { default = 0, min = 0, max = 3600 }),
    jti = check.boolean(ctx, "jwt.jti", b.jti, false),
    claims = {},
    default_aud = use == "jwt_bearer", -- (aud: the token endpoint, unless the claims say)
  }
  local claims = b.claims
  if claims == nil then claims = {} end
  check.table(ctx, "jwt.claims", claims)
  for k, v in pairs(claims) do
    if type(k) ~= "string" then ctx.fail("jwt.claims", "must be named by strings") end
    if SET_BY[k] then ctx.fail("jwt.claims." .. k, "is set by connkit (from " .. SET_BY[k] .. ")") end
    out.claims[#out.claims + 1] = { name = k, claim = check_claim(ctx, "jwt.claims." .. k, v, names, 1) }
  end
  table.sort(out.claims, function(x, y) return x.name < y.name end)
  return out
end

-- The value of a claim for an account; nil and an error for a template
-- that cannot be filled.
local function fill_claim(acct, field, c)
  if c.template then
    local s, err = acct:fill(c.template)
    if not s then return nil, errors.new("template", field .. ": " .. err.message) end
    return s
  end
  if c.entries == nil then return c.value end
  local out = {}
  for _, e in ipairs(c.entries) do
    local v, err = fill_claim(acct, field .. "." .. tostring(e.name), e.claim)
    if err then return nil, err end
    out[e.name] = v
  end
  return out
end

--- A new JWT signed from the account's `jwt` block, and its expiry and
-- issue times. `aud` (optional) is used when the claims name none.
-- Returns token, expires_at, now; or nil and an error (`key`, `template`).
-- @tparam connkit.account.Account acct the account
-- @tparam[opt] string aud the audience when the claims name none
-- @treturn[1] string the token
-- @treturn[1] number its expiry (epoch seconds)
-- @treturn[1] number its issue time
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.sign(acct, aud)
  local b = acct.integration.jwt
  local claims = {}
  for _, c in ipairs(b.claims) do
    local v, err = fill_claim(acct, "jwt.claims." .. c.name, c.claim)
    if err then return nil, err end
    claims[c.name] = v
  end
  if claims.aud == nil then claims.aud = aud end
  local key, alg = signing_key.load(acct, b.signer)
  if not key then return nil, alg end
  local kid, kerr = signing_key.kid(acct, b.signer)
  if kerr then return nil, kerr end
  local now = os.time()
  claims.iat = now - b.backdate
  claims.exp = now + b.ttl
  if b.jti then claims.jti = core.b64url_encode(core.random(18)) end
  local token, serr = jwt.sign({ alg = alg, kid = kid or false }, claims, key)
  if not token then
    return nil, errors.new("key", (b.signer.fields.key or b.signer.fields.key_file or b.signer.fields.secret)
      .. ": " .. serr.message)
  end
  acct:_add_secret(token)
  return token, claims.exp, now
end

--- auth = "jwt": a new JWT as the account's token record; it is renewed
-- by the refresh rules like any token (a 1200 s JWT at half its life).
-- @tparam connkit.account.Account acct the account
-- @treturn[1] table the token record
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.fetch_token(acct)
  local token, exp, now = M.sign(acct)
  if not token then return nil, exp end
  return { access_token = token, token_type = "bearer", issued_at = now, expires_at = exp }
end

--- oauth2.grant_type = "jwt_bearer" (RFC 7523 2.1): a new assertion
-- (aud: the token endpoint unless the claims name one) exchanged at the
-- token endpoint. Renewal is a new assertion; no refresh token is used.
-- @tparam connkit.account.Account acct the account
-- @tparam table params the token request's parameters
-- @treturn[1] table the token record
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.bearer_grant(acct, params)
  local oauth2 = require "connkit.auth.oauth2"
  local o = acct.integration.oauth2
  local url, uerr = require("connkit.auth.discovery").url(acct, "token_url")
  if not url then return nil, uerr end
  local assertion, err = M.sign(acct, url)
  if not assertion then return nil, err end
  params.grant_type = M.GRANT_TYPE
  params.assertion = assertion
  if o.scope then
    local scope, serr = acct:fill(o.scope)
    if not scope then return nil, serr end
    if scope ~= "" then params.scope = scope end
  end
  return oauth2.token_call(acct, params, "token endpoint (jwt_bearer)")
end

--- The {jwt} of a custom_token template: a new JWT from the `jwt` block.
-- @tparam connkit.account.Account acct the account
-- @treturn[1] string the JWT
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.custom_token_jwt(acct)
  local token, err = M.sign(acct)
  if not token then return nil, err end
  return token
end

return M
