--- JWT client authentication (RFC 7523 2.2, OpenID Connect Core 9):
-- `oauth2.client_auth = "private_key_jwt"` signs a short-lived assertion
-- with the client's private key (`client_key` / `client_key_file`), and
-- `"client_secret_jwt"` with the client secret (HS256). Every call that
-- authenticates the client (token, revocation, device authorization, PAR)
-- sends a new one.
-- @module connkit.auth.client_assertion
local core = require "connkit.core"
local check = require "connkit.check"
local errors = require "connkit.errors"
local jwt = require "connkit.auth.jwt"
local signing_key = require "connkit.auth.signing_key"

local M = {}

--- The client_assertion_type of RFC 7523 2.2.
M.ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
--- Seconds an assertion is valid for.
M.LIFETIME = 60

--- The oauth2 fields this module reads.
M.FIELDS = { client_key = true, client_key_file = true, client_key_password = true,
  client_key_id = true, client_key_alg = true, client_assertion_aud = true }

local KEY_FIELDS = { key = "client_key", key_file = "client_key_file", password = "client_key_password",
  kid = "client_key_id", alg = "client_key_alg" }

--- True for the client_auth values this module handles.
-- @tparam string client_auth the oauth2.client_auth value
-- @treturn boolean
function M.handles(client_auth)
  return client_auth == "private_key_jwt" or client_auth == "client_secret_jwt"
end

--- Checks the JWT client authentication fields of the oauth2 block `b`
-- into `out` (the normalized block, whose client_auth is set). The fields
-- are refused with any other client_auth.
-- @tparam table ctx the check context
-- @tparam table b the oauth2 block as given
-- @tparam table out the normalized block, completed here
-- @tparam table names the parameter names
-- @raise naming the field
function M.check_definition(ctx, b, out, names)
  local auth = out.client_auth
  if not M.handles(auth) then
    for f in pairs(M.FIELDS) do
      if b[f] ~= nil then ctx.fail("oauth2." .. f, 'needs oauth2.client_auth = "private_key_jwt" or "client_secret_jwt"') end
    end
    return
  end
  if auth == "client_secret_jwt" then
    for _, f in ipairs({ "client_key", "client_key_file", "client_key_password" }) do
      if b[f] ~= nil then ctx.fail("oauth2." .. f, 'is for client_auth = "private_key_jwt" (client_secret_jwt signs with the client secret)') end
    end
  end
  -- (private_key_jwt: the key may also come from the account's credentials.client_key)
  out.client_key = signing_key.check_definition(ctx, b, "oauth2", KEY_FIELDS, names,
    { secret_only = auth == "client_secret_jwt", private_only = auth == "private_key_jwt" })
  out.client_assertion_aud = check.string(ctx, "oauth2.client_assertion_aud", b.client_assertion_aud,
    { default = "token_endpoint", one_of = { "token_endpoint", "issuer" } })
  if out.client_assertion_aud == "issuer" and b.issuer == nil then
    ctx.fail("oauth2.client_assertion_aud", 'is "issuer", but oauth2.issuer is not set')
  end
end

--- Whether the account needs a client secret: client authentication
-- basic, post (except for the jwt_bearer grant, whose assertion may be all
-- the authentication) and client_secret_jwt.
-- @tparam table o the normalized oauth2 block
-- @treturn boolean
function M.needs_secret(o)
  if o.client_auth == "client_secret_jwt" then return true end
  return (o.client_auth == "basic" or o.client_auth == "post") and o.grant_type ~= "jwt_bearer"
end

--- Account checks (raise through ctx): a private_key_jwt account needs a
-- key from the definition or credentials.client_key, which no other
-- client_auth takes.
-- @tparam connkit.account.Account acct the account
-- @tparam table ctx the account's check context
-- @raise naming the field
function M.check_account(acct, ctx)
  local o = acct.integration.oauth2
  local given = acct.credentials.client_key ~= nil
  if o.client_auth ~= "private_key_jwt" then
    if given then ctx.fail("credentials.client_key", 'is only used with oauth2.client_auth = "private_key_jwt"') end
    return
  end
  local spec = o.client_key
  if not (given or spec.key or spec.key_file) then
    ctx.fail("credentials.client_key", 'is required: oauth2.client_auth is "private_key_jwt" and the integration'
      .. " sets no client_key or client_key_file")
  end
end

-- The spec of a key given in the account's credentials (client_key):
-- the definition's kid, password and alg go with it.
local function credential_spec(acct, spec)
  local s = acct._client_key_spec
  if not s then
    s = { pem = acct.credentials.client_key, password = spec.password, kid = spec.kid, alg = spec.alg,
      fields = { key = "credentials.client_key", password = spec.fields.password, kid = spec.fields.kid,
        alg = spec.fields.alg } }
    acct._client_key_spec = s
  end
  return s
end

-- The audience of the assertions: the token endpoint (OpenID Connect Core
-- 9; servers accept it for their other endpoints too) or the issuer.
local function audience(acct, o)
  if o.client_assertion_aud == "issuer" then
    local iss, err = acct:fill(o.issuer)
    if not iss then return nil, err end
    return iss
  end
  return require("connkit.auth.discovery").url(acct, "token_url")
end

--- A new signed client assertion for the account: iss = sub = client id,
-- aud, a random jti, iat and an exp 60 seconds later. Returns the JWT, or
-- nil and an error (`key`, `template`, `config`, or what discovery gives).
-- @tparam connkit.account.Account acct the account
-- @tparam string client_id the client id
-- @tparam[opt] string secret the client secret (client_secret_jwt)
-- @treturn[1] string the JWT
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.assertion(acct, client_id, secret)
  local o = acct.integration.oauth2
  local spec = o.client_key
  if o.client_auth == "private_key_jwt" and acct.credentials.client_key ~= nil then
    spec = credential_spec(acct, spec)
  end
  if o.client_auth == "private_key_jwt" and not (spec.pem or spec.key or spec.key_file) then
    return nil, errors.new("config", 'oauth2.client_auth is "private_key_jwt" but no key is given'
      .. " (oauth2.client_key, oauth2.client_key_file or credentials.client_key)")
  end
  local key, alg = signing_key.load(acct, spec, secret)
  if not key then return nil, alg end
  local kid, kerr = signing_key.kid(acct, spec)
  if kerr then return nil, kerr end
  local aud, aerr = audience(acct, o)
  if not aud then return nil, aerr end
  local now = os.time()
  local token, serr = jwt.sign({ alg = alg, kid = kid or false }, {
    iss = client_id, sub = client_id, aud = aud,
    jti = core.b64url_encode(core.random(18)),
    iat = now, exp = now + M.LIFETIME,
  }, key)
  if not token then
    return nil, errors.new("key", (spec.fields.key or spec.fields.secret or "oauth2.client_secret") .. ": " .. serr.message)
  end
  acct:_add_secret(token)
  return token
end

--- Adds a client assertion (and the client id) to the parameters of a call
-- to a token, revocation, device authorization or PAR endpoint. No client
-- secret is sent. Returns true, or nil and an error.
-- @tparam connkit.account.Account acct the account
-- @tparam table params the call's parameters (added to)
-- @tparam string client_id the client id
-- @tparam[opt] string secret the client secret (client_secret_jwt)
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.authenticate(acct, params, client_id, secret)
  local token, err = M.assertion(acct, client_id, secret)
  if not token then return nil, err end
  params.client_id = client_id
  params.client_assertion_type = M.ASSERTION_TYPE
  params.client_assertion = token
  return true
end

return M
