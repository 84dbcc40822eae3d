--- The token side of a connected account: the methods token, refresh,
-- status, exchange and id_token_claims (on every account; an account
-- whose auth has no token says so), and the setup at creation of an
-- account that fetches its token. The renewal itself: connkit.auth.tokens.
-- @module connkit.account_tokens
local errors = require "connkit.errors"
local account = require "connkit.account" -- (loaded first: see its end)

local Account = account.Account
local fill_or_fail = account.fill_or_fail

local M = {}

--- Sets up an account that fetches its token (oauth2, custom_token, jwt):
-- its credentials checked, a store (memory by default), the refresh hook
-- the request path calls, the state read back from the store.
-- @tparam connkit.account.Account self the account being created
-- @tparam table ctx the check context of account creation (connkit.check)
-- @raise naming the field, for a missing credential or a template that
--   cannot be filled
function M.setup(self, ctx)
  local tokens = require "connkit.auth.tokens"
  local integ = self.integration
  if integ.auth == "oauth2" then
    local o = integ.oauth2
    local assertion = require "connkit.auth.client_assertion" -- (JWT client auth, jwt_bearer)
    if self.credentials.client_id == nil and o.client_id == nil and o.grant_type ~= "jwt_bearer" then
      ctx.fail("credentials.client_id", "is required: the integration sets no oauth2.client_id")
    end
    assertion.check_account(self, ctx)
    if assertion.needs_secret(o) and self.credentials.client_secret == nil and o.client_secret == nil then
      ctx.fail("credentials.client_secret", ('is required: oauth2.client_auth is "%s" and the integration sets no client_secret')
        :format(o.client_auth))
    end
    local def_secret = o.client_secret and fill_or_fail(self, ctx, "oauth2.client_secret", o.client_secret)
    if def_secret then self:_add_secret(def_secret) end
    if o.client_auth == "client_secret_jwt" then
      -- HS256 needs a key of 256 bits or more (RFC 7518 3.2); the secret
      -- the token requests use is the account's, else the definition's
      local secret, field = self.credentials.client_secret, "credentials.client_secret"
      if secret == nil then secret, field = def_secret, "oauth2.client_secret" end
      if #secret < 32 then
        ctx.fail(field, ("is %d bytes; client_auth = \"client_secret_jwt\" signs with HS256, whose key must"
          .. " be 32 bytes or more (RFC 7518 3.2)"):format(#secret))
      end
    end
    if o.client_id then fill_or_fail(self, ctx, "oauth2.client_id", o.client_id) end
    self._fetch_token = require("connkit.auth.oauth2").fetch_token
    if o.dpop then require("connkit.auth.dpop").setup(self) end
    require "connkit.auth.login"
  elseif integ.auth == "jwt" then
    self._fetch_token = require("connkit.auth.jwt_auth").fetch_token
  else
    self._fetch_token = require("connkit.auth.custom_token").fetch_token
  end
  if self.store == nil then self.store = require("connkit.store").memory() end
  self._ensure_token = tokens.ensure
  tokens.load(self)
end

--- The verified claims of the account's current OpenID Connect id_token
-- (connkit.auth.oidc, README "OpenID Connect").
-- @treturn[1] table the claims (a copy): sub, iss, aud, exp, ...
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (e.g. code "no_token": no id_token yet)
function Account:id_token_claims()
  return require("connkit.auth.oidc").claims(self)
end

--- What the account knows about its authorization, with no secrets:
-- { auth, authorized, expires_in, scope, token_type, has_refresh_token,
-- state, last_error, refreshed_at } (state: see connkit.hooks).
-- @treturn table `auth`, `authorized` (boolean), `expires_in` (seconds or
--   nil), `scope`, `token_type`, `has_refresh_token`, `store_error` (`{ code,
--   message }` when the store's record cannot be read), `state` ("ok" |
--   "expiring" | "failing" | "reauthorize"), `last_error`, `refreshed_at`
function Account:status()
  local st
  if self._ensure_token then st = require("connkit.auth.tokens").status(self)
  else st = { auth = self.integration.auth, authorized = true } end
  return require("connkit.hooks").health(self, st)
end

--- A valid access token, fetched or refreshed as needed (api_token: the
-- token itself).
-- @treturn[1] string the access token
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error ("no_token" for an auth type without one,
--   "reauthorize", "invalid_grant", "timeout", ...)
function Account:token()
  if self._ensure_token then
    local ok, err = self:_ensure_token()
    if not ok then return nil, err end
  end
  if self._values.token ~= nil then return self._values.token end
  return nil, errors.new("no_token", ('auth = "%s" has no token'):format(self.integration.auth))
end

--- Forces a token refresh (oauth2, custom_token, jwt): one token request,
-- shared with every caller that needs the token meanwhile.
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error ("no_token" for an auth type without a token,
--   "reauthorize", "invalid_grant", ...)
function Account:refresh()
  if not self._ensure_token then
    return nil, errors.new("no_token", ('auth = "%s" has no token to refresh'):format(self.integration.auth))
  end
  return require("connkit.auth.tokens").renew(self, true, nil)
end

--- Token exchange (RFC 8693): a token for this account's token, or for
-- another account (`into`); see connkit.auth.exchange, README "Token exchange".
-- @tparam table opts
--
--  * `subject_token` (string, an account, or "self"): the token to trade
--  * `subject_token_type` (string): its type URI (short names such as
--    "access_token" are accepted)
--  * `actor_token`, `actor_token_type`: the same for an actor (optional)
--  * `audience`, `resource` (string or list), `scope` (string or list),
--    `requested_token_type` (string)
--  * `into` (an account of an oauth2 integration): the account that keeps
--    the new token (else it is returned)
-- @treturn[1] table the result: issued_token_type, token_type, scope,
--   expires_in, expires_at, has_refresh_token, and access_token and
--   refresh_token only without `into` (`stored_in` with it); tostring hides
--   the tokens
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (the token endpoint's, e.g. "invalid_grant")
-- @raise for a bad option, or an account whose auth is not oauth2
function Account:exchange(opts)
  local result, err = require("connkit.auth.exchange").exchange(self, opts)
  return result, err
end

return M
