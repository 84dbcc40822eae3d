--- OAuth 2.0: the `oauth2` block of a definition. The grant flows
-- (authorization code with PKCE, client credentials, refresh, revoke, device
-- flow, loopback login) build on this.
-- @module connkit.auth.oauth2
local core = require "connkit.core"
local check = require "connkit.check"
local errors = require "connkit.errors"
local endpoint = require "connkit.auth.token_endpoint"
local discovery = require "connkit.auth.discovery"
local oidc = require "connkit.auth.oidc"
local tokens = require "connkit.auth.tokens"
local client_assertion = require "connkit.auth.client_assertion"
local urls = require "connkit.http.url"

local M = {}
local Account = require("connkit.account").Account

-- pending authorization requests live this long (seconds)
local PENDING_TTL = 600

local FIELDS = {
  grant_type = true, token_url = true, token_method = true, authorize_url = true,
  revoke_url = true, device_authorization_url = true, issuer = true, scope = true,
  client_id = true, client_secret = true, client_auth = true, pkce = true,
  extra_params = true, authorize_params = true, redirect_uri = true, discovery = true,
  token_metadata = true, dpop = true, dpop_alg = true,
  jwks_uri = true, id_token_signed_response_alg = true, -- OpenID Connect (connkit.auth.oidc)
}
for k in pairs(require("connkit.auth.par").FIELDS) do FIELDS[k] = true end -- (PAR, RFC 9126)
-- (JWT client authentication: connkit.auth.client_assertion)
for f in pairs(client_assertion.FIELDS) do FIELDS[f] = true end

--- Validates the `oauth2` block; returns it normalized, templates compiled.
-- @tparam table b the `oauth2` block
-- @tparam function fail fail(field, message): raises naming the field
-- @tparam table env the definition's check environment: ctx (the check
--   context), names (the parameter names), template(field, str, kind) and
--   secure_url(field, str) (both compile and check a template)
-- @treturn table the normalized block
-- @raise naming the field
-- @local
function M.check_definition(b, fail, env)
  local ctx = env.ctx
  check.known_fields(ctx, b, "oauth2", FIELDS)
  local out = {
    grant_type = check.string(ctx, "oauth2.grant_type", b.grant_type,
      { default = "authorization_code", one_of = { "authorization_code", "client_credentials", "jwt_bearer" } }),
    token_method = check.string(ctx, "oauth2.token_method", b.token_method, { default = "POST", one_of = { "POST", "GET" } }),
    client_auth = check.string(ctx, "oauth2.client_auth", b.client_auth, { default = "basic",
      one_of = { "basic", "post", "none", "private_key_jwt", "client_secret_jwt", "tls_client_auth",
        "self_signed_tls_client_auth" } }),
  }
  client_assertion.check_definition(ctx, b, out, env.names)
  if b.redirect_uri ~= nil then
    -- given as is to the server; no placeholders (it must match exactly)
    local r = check.string(ctx, "oauth2.redirect_uri", b.redirect_uri)
    env.template("oauth2.redirect_uri", r, "raw", { allow = {} })
    if r:find("[{}]") then fail("oauth2.redirect_uri", "cannot hold placeholders") end
    out.redirect_uri = r
  end
  -- endpoint URLs: https:// (http:// only to a loopback host, or with
  -- allow_insecure_http), checked by env.secure_url
  -- with an issuer to discover, the endpoints may come from its metadata
  local discovered = discovery.check_definition(b, out, env)
  oidc.check_definition(b, out, env)
  if b.token_url ~= nil or not discovered then out.token_url = env.secure_url("oauth2.token_url", b.token_url) end
  if (out.grant_type == "authorization_code" and not discovered) or b.authorize_url ~= nil then
    out.authorize_url = env.secure_url("oauth2.authorize_url", b.authorize_url)
  end
  for _, f in ipairs({ "revoke_url", "device_authorization_url" }) do
    if b[f] ~= nil then out[f] = env.secure_url("oauth2." .. f, b[f]) end
  end
  for _, f in ipairs({ "scope", "client_id", "client_secret" }) do
    if b[f] ~= nil then out[f] = env.template("oauth2." .. f, check.string(ctx, "oauth2." .. f, b[f], { empty = f == "scope" }), "raw") end
  end
  out.pkce = check.boolean(ctx, "oauth2.pkce", b.pkce, out.grant_type == "authorization_code")
  require("connkit.auth.par").check_definition(b, out, env)
  out.token_metadata = require("connkit.auth.token_metadata").check_definition(ctx, "oauth2", b.token_metadata, env.names)
  require("connkit.auth.dpop").check_definition(ctx, b, out) -- (RFC 9449: oauth2.dpop, dpop_alg)
  -- extra_params go to the token endpoint; authorize_params to the
  -- authorization request (e.g. an RFC 8707 resource or an audience that
  -- both need)
  for _, f in ipairs({ "extra_params", "authorize_params" }) do
    out[f] = {}
    if b[f] ~= nil then
      check.table(ctx, "oauth2." .. f, b[f])
      for k, v in pairs(b[f]) do
        if type(k) ~= "string" then fail("oauth2." .. f, "must be named by strings") end
        out[f][#out[f] + 1] = { name = k, template = env.template("oauth2." .. f .. "." .. k, v, "raw") }
      end
      table.sort(out[f], function(x, y) return x.name < y.name end)
    end
  end
  return out
end

local function fill(acct, tpl, ctx)
  local s, err = acct:fill(tpl, ctx)
  if not s then error(("account '%s': %s"):format(acct.id, err.message), 0) end
  return s
end

local function base_params(acct)
  local o = acct.integration.oauth2
  local p = {}
  for _, e in ipairs(o.extra_params) do p[e.name] = fill(acct, e.template) end
  return p
end

-- Calls the token endpoint with a grant; returns the new record or nil, err.
-- An id_token in the reply is validated first (connkit.auth.oidc; `nonce`:
-- the one the authorization request carried).
local function token_call(acct, params, what, nonce)
  local o = acct.integration.oauth2
  local headers = {}
  local ok, err = endpoint.authenticate(acct, params, headers)
  if not ok then return nil, err end
  local url, uerr = discovery.url(acct, "token_url")
  if not url then return nil, uerr end
  -- (with oauth2.dpop: a proof on each call, and the nonce challenge followed)
  local call = acct._dpop and require("connkit.auth.dpop").token_call or endpoint.call
  local fields, ferr = call(acct, url, o.token_method, params, headers, what)
  if not fields then return nil, ferr end
  local rec, rerr = endpoint.token_record(acct, fields, what)
  if not rec then return nil, rerr end
  return oidc.accept(acct, rec, fields, params.grant_type, nonce)
end

--- Fetches a new token for the account: client credentials, or the refresh
-- token grant (an authorization-code account that was never authorized, or
-- has no refresh token, must authorize first: err.code "reauthorize", the
-- message says which).
-- @tparam connkit.account.Account acct the account
-- @treturn[1] table the token record (access_token, expires_at, ...)
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
-- @local
function M.fetch_token(acct)
  local o = acct.integration.oauth2
  local ex = acct._tok
  if ex and ex.source == "token_exchange" and not ex.refresh_token then return nil, require("connkit.auth.exchange").expired(acct) end
  local params = base_params(acct)
  if o.grant_type == "jwt_bearer" then
    return require("connkit.auth.jwt_auth").bearer_grant(acct, params) -- (RFC 7523 2.1)
  end
  if o.grant_type == "client_credentials" then
    params.grant_type = "client_credentials"
    if o.scope then params.scope = fill(acct, o.scope) end
    return token_call(acct, params, "token endpoint (client_credentials)")
  end
  local rec = acct._tok
  local rt = rec and rec.refresh_token
  if not rt then
    if not (rec and rec.access_token) then
      return nil, errors.new("reauthorize", ("account '%s' is not authorized yet: authorize it first "
        .. "(login, login_device, or authorize_url and finish_authorization)"):format(acct.id))
    end
    return nil, errors.new("reauthorize", ("account '%s' has no refresh token: authorize it again (login)"):format(acct.id))
  end
  params.grant_type = "refresh_token"
  params.refresh_token = rt
  local rec, err = token_call(acct, params, "token endpoint (refresh_token)")
  if not rec and err.code == "invalid_grant" then
    return nil, errors.new("reauthorize", ("account '%s': the refresh token was refused (invalid_grant); authorize it again")
      :format(acct.id), { status = err.status, oauth_error = "invalid_grant" })
  end
  return rec, err
end

M.token_call = token_call
M.base_params = base_params

local function random_token(n)
  return core.b64url_encode(core.random(n))
end

local AUTHORIZE_OPTIONS = { redirect_uri = "nonempty", scope = "string", params = "query" }
--- The URL to send the user to (authorization code grant). It carries a
-- random single-use `state` and, by default, a PKCE S256 challenge; both are
-- remembered until finish_authorization (for 10 minutes). With `openid` in
-- the scope a nonce is added; with `oauth2.par` the request is pushed first
-- (RFC 9126) and the URL carries only client_id and request_uri.
-- @tparam table opts
--
--  * `redirect_uri` (string): where the server sends the user back
--    (required unless the definition's oauth2 block has one)
--  * `scope` (string): over the definition's oauth2.scope
--  * `params` (table): extra query parameters for the authorization request
-- @treturn[1] string the URL
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (discovery, PAR: "token_endpoint", "connect", ...)
-- @raise when the account is not oauth2 with an authorize_url or issuer, has
--   no client_id, or an option is bad
-- @usage local url = acct:authorize_url { redirect_uri = "http://127.0.0.1:8765/callback" }
function Account:authorize_url(opts)
  local o = self.integration.oauth2
  if self.integration.auth ~= "oauth2" or not (o.authorize_url or o.discovery) then
    check.raise(("account '%s': authorize_url needs auth = \"oauth2\" with oauth2.authorize_url or oauth2.issuer"):format(self.id))
  end
  opts = check.options("authorize_url", opts, AUTHORIZE_OPTIONS)
  local redirect_uri = opts.redirect_uri or o.redirect_uri
  if type(redirect_uri) ~= "string" then check.raise("authorize_url: option 'redirect_uri' is required") end
  local id = endpoint.client(self)
  if not id then check.raise(("account '%s': no client_id"):format(self.id)) end
  -- (the endpoint, the PKCE methods and the iss to expect: from metadata too)
  local url, expect = discovery.authorization(self)
  if not url then return nil, expect end
  local state = random_token(24)
  local pending = { redirect_uri = redirect_uri, created = os.time(), iss = expect }
  local q = { response_type = "code", client_id = id, redirect_uri = redirect_uri, state = state }
  local scope = opts.scope or (o.scope and fill(self, o.scope))
  if scope and scope ~= "" then q.scope = scope end
  if o.pkce then
    local verifier, challenge = core.pkce()
    pending.verifier = verifier
    self:_add_secret(verifier)
    q.code_challenge, q.code_challenge_method = challenge, "S256"
  end
  for _, e in ipairs(o.authorize_params) do q[e.name] = fill(self, e.template) end
  if opts.params then
    for k, v in pairs(opts.params) do q[k] = v end
  end
  if o.dpop and q.dpop_jkt == nil then
    -- RFC 9449 10: the code is bound to the account's DPoP key, so only a
    -- token request signed with that key can redeem it
    local jkt, jerr = require("connkit.auth.dpop").thumbprint(self)
    if not jkt then return nil, jerr end
    q.dpop_jkt = jkt
  end
  local nok, nerr = oidc.authorization_request(self, q, pending) -- (a nonce with openid)
  if not nok then return nil, nerr end
  local pushed, perr = require("connkit.auth.par").push(self, q) -- (RFC 9126: only client_id and request_uri then)
  if pushed == false then return nil, perr end
  q = pushed or q
  self._pending = self._pending or {}
  for s, p in pairs(self._pending) do
    if os.time() - p.created > PENDING_TTL then self._pending[s] = nil end
  end
  self._pending[state] = pending
  return url .. (url:find("?", 1, true) and "&" or "?") .. urls.encode_pairs(q, "query", "authorize_url: params")
end

--- Completes the authorization code grant from the redirect (a full URL or
-- its query string): checks state (single use), error, iss (RFC 9207), then
-- exchanges the code with the same redirect_uri and the PKCE verifier.
-- The tokens then go to the account's store.
-- @tparam string input the callback URL, or its query string
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error: "state_mismatch" (missing, unknown, used or
--   expired state), "issuer_mismatch", the server's error ("access_denied",
--   "invalid_grant", ...), "id_token_invalid" (OpenID Connect)
-- @raise when input is not a string
function Account:finish_authorization(input)
  if type(input) ~= "string" then
    check.raise("finish_authorization: give the callback URL or its query string, not a " .. type(input))
  end
  local q = input:match("%?([^#]*)") or input:gsub("^[?#]", ""):match("^([^#]*)")
  local p, dups = endpoint.parse_form(q)
  local pending = p.state and self._pending and self._pending[p.state]
  if not pending or dups.state then
    return nil, errors.new("state_mismatch", "the authorization response's state is missing, unknown or already used")
  end
  self._pending[p.state] = nil -- single use, whatever comes next
  if os.time() - pending.created > PENDING_TTL then
    return nil, errors.new("state_mismatch", "the authorization request has expired; start again")
  end
  local iok, ierr = discovery.check_iss(pending.iss, p.iss, dups.iss)
  if not iok then return nil, ierr end
  if p.error then
    local code = endpoint.OAUTH_ERRORS[p.error] and p.error or "oauth_error"
    return nil, errors.new(code, self:_redact("authorization refused: " .. p.error ..
      endpoint.description(self, p.error_description)))
  end
  if not p.code or p.code == "" or dups.code then
    return nil, errors.new("invalid_request", "the authorization response has no code, or more than one")
  end
  local params = base_params(self)
  params.grant_type = "authorization_code"
  params.code = p.code
  params.redirect_uri = pending.redirect_uri
  params.code_verifier = pending.verifier
  local rec, err = token_call(self, params, "token endpoint (authorization_code)", pending.nonce)
  if not rec then return nil, err end
  return tokens.install(self, tokens.merge(self, rec))
end

--- Revokes the refresh token (or else the access token) at revoke_url
-- (RFC 7009) and drops the local tokens either way (and the DPoP key).
-- Without a revoke_url only the local tokens are dropped.
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error: "no_token" for an auth type without tokens,
--   the revocation endpoint's error, or the store's
function Account:revoke()
  if not self._ensure_token then
    return nil, errors.new("no_token", ('auth = "%s" has no token to revoke'):format(self.integration.auth))
  end
  local o = self.integration.oauth2
  local rec = self._tok or {}
  local token, hint = rec.refresh_token, "refresh_token"
  if not token then token, hint = rec.access_token, "access_token" end
  local ok, err = true, nil
  local url
  if o and token then url, err = discovery.url(self, "revoke_url", true) end
  ok = err == nil
  if url then
    local params = { token = token, token_type_hint = hint }
    local headers = {}
    ok, err = endpoint.authenticate(self, params, headers)
    if ok then
      local fields
      fields, err = endpoint.call(self, url, "POST", params, headers, "revocation endpoint")
      -- RFC 7009: 200 with any (often empty) body is success
      if not fields and err and err.code == "token_endpoint" and err.status == 200 then err = nil end
      ok = err == nil
    end
  end
  local dok, derr = tokens.drop(self)
  if not ok then return nil, err end
  if not dok then return nil, derr end
  return true
end

return M
