--- OAuth 2.0 Token Exchange (RFC 8693): `account:exchange{...}` trades a
-- token (the subject, and optionally an actor) for a new one at the
-- account's token endpoint, authenticated as the account's client. The new
-- token is returned, or installed as another account's token (`into`).
-- @module connkit.auth.exchange
local core = require "connkit.core"
local check = require "connkit.check"
local errors = require "connkit.errors"
local endpoint = require "connkit.auth.token_endpoint"
local discovery = require "connkit.auth.discovery"

local M = {}

--- The grant type of a token exchange request (RFC 8693 2.1).
M.GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"

-- RFC 8693 3: the token type identifiers it registers, by their last part
local TYPE_PREFIX = "urn:ietf:params:oauth:token-type:"
local SHORT_TYPES = { access_token = true, refresh_token = true, id_token = true, saml1 = true, saml2 = true, jwt = true }
M.ACCESS_TOKEN = TYPE_PREFIX .. "access_token"

-- issued token types an account can send as its bearer token (`into`)
local USABLE = { [TYPE_PREFIX .. "access_token"] = true, [TYPE_PREFIX .. "jwt"] = true }

local OPTIONS = {
  subject_token = "any", subject_token_type = "nonempty", actor_token = "any", actor_token_type = "nonempty",
  audience = "any", resource = "any", scope = "any", requested_token_type = "nonempty", into = "any",
}

local function bad(name, why)
  check.raise(("exchange: option '%s' %s"):format(name, why))
end

local function is_account(v)
  return getmetatable(v) == require("connkit.account").Account
end

--- A token type URI: one of RFC 8693's short names (access_token,
-- refresh_token, id_token, jwt, saml1, saml2) becomes its URN; any other
-- absolute URI is taken as it is; anything else raises naming the option.
-- @tparam string name the option's name, for the error
-- @tparam string v the short name or URI
-- @treturn string the token type URI
-- @raise for anything else, naming the option
function M.token_type(name, v)
  if SHORT_TYPES[v] then return TYPE_PREFIX .. v end
  if v:find("^%a[%w+.-]*:%S+$") then return v end
  bad(name, "must be a token type URI (urn:ietf:params:oauth:token-type:...) or one of access_token,"
    .. " refresh_token, id_token, jwt, saml1, saml2")
end

-- A token option: a string, "self" (this account's access token) or an
-- account (its access token). Returns the token and whether it is an
-- account's access token, or nil and the run-time error of fetching it.
local function token_of(self, name, v)
  local acct
  if v == "self" then acct = self elseif is_account(v) then acct = v end
  if acct then
    local tok, err = acct:token()
    if not tok then
      return nil, errors.new(err.code, ("exchange: %s: %s"):format(name, err.message), err)
    end
    return tok, true
  end
  if type(v) ~= "string" or v == "" then
    bad(name, ('must be a token (a non-empty string), "self" or an account, not %s'):format(
      v == "" and "an empty string" or ("a " .. type(v))))
  end
  return v, false
end

-- audience / resource: a string or a list of strings (sent repeated).
local function list_of(name, v, each)
  local items = type(v) == "table" and v or { v }
  if type(v) == "table" then
    for k in pairs(v) do
      if type(k) ~= "number" or k < 1 or k > #v or k % 1 ~= 0 then bad(name, "must be a string or a list of strings") end
    end
    if #v == 0 then bad(name, "must not be an empty list") end
  end
  for i, s in ipairs(items) do
    local at = type(v) == "table" and ("%s[%d]"):format(name, i) or name
    if type(s) ~= "string" or s == "" then bad(at, "must be a non-empty string, not " .. (s == "" and "an empty string" or ("a " .. type(s)))) end
    if each then each(at, s) end
  end
  return type(v) == "table" and items or v
end

-- RFC 8693 2.1: a resource is an absolute URI without a fragment
local function absolute_uri(at, s)
  if not s:find("^%a[%w+.-]*:%S+$") or s:find("#", 1, true) then
    bad(at, "must be an absolute URI without a fragment (RFC 8693 2.1)")
  end
end

-- scope: a string, or a list of scope tokens joined with spaces
local function scope_of(v)
  if type(v) == "string" then
    if v == "" then bad("scope", "must not be empty") end
    return v
  end
  if type(v) ~= "table" then bad("scope", "must be a string or a list of strings, not a " .. type(v)) end
  list_of("scope", v, function(at, s)
    if s:find("%s") then bad(at, "must be one scope token (no spaces)") end
  end)
  return table.concat(v, " ")
end

-- What may be shown of an exchange's result: tostring never shows a token.
local Result = { __name = "connkit.token_exchange" }
Result.__index = Result
function Result:__tostring()
  local parts = {}
  for _, k in ipairs({ "issued_token_type", "token_type", "expires_in", "scope", "stored_in" }) do
    if self[k] ~= nil then parts[#parts + 1] = ("%s=%s"):format(k, tostring(self[k])) end
  end
  parts[#parts + 1] = "has_refresh_token=" .. tostring(self.has_refresh_token)
  return "connkit.token_exchange (" .. table.concat(parts, ", ") .. ")"
end

--- The error of an account whose token came from a token exchange and has
-- expired with no refresh token: only another exchange can give it one
-- (code "reauthorize").
-- @tparam connkit.account.Account acct the account
-- @treturn connkit.errors.Error the error
function M.expired(acct)
  return errors.new("reauthorize", ("account '%s': its token came from a token exchange (RFC 8693) and has"
    .. " no refresh token to renew it: exchange again (account:exchange{ into = ... })"):format(acct.id))
end

-- The checked options: the form parameters of the request (less the
-- tokens, which are fetched later) and the account to install into.
local function check_options(opts)
  if type(opts) ~= "table" then check.raise("exchange: options must be a table, not a " .. type(opts)) end
  check.options("exchange", opts, OPTIONS)
  if opts.subject_token == nil then bad("subject_token", 'is required (a token, "self" or an account)') end
  if opts.actor_token_type ~= nil and opts.actor_token == nil then bad("actor_token_type", "needs actor_token") end
  local p = {}
  p.subject_token_type = M.token_type("subject_token_type", opts.subject_token_type or "access_token")
  if opts.actor_token ~= nil then
    p.actor_token_type = M.token_type("actor_token_type", opts.actor_token_type or "access_token")
  end
  if opts.requested_token_type ~= nil then
    p.requested_token_type = M.token_type("requested_token_type", opts.requested_token_type)
  end
  if opts.audience ~= nil then p.audience = list_of("audience", opts.audience) end
  if opts.resource ~= nil then p.resource = list_of("resource", opts.resource, absolute_uri) end
  if opts.scope ~= nil then p.scope = scope_of(opts.scope) end
  local into = opts.into
  if into ~= nil then
    if not is_account(into) or into.integration.auth ~= "oauth2" then
      bad("into", "must be an account of an oauth2 integration (integration:account{...})")
    end
    if p.requested_token_type and not USABLE[p.requested_token_type] then
      bad("requested_token_type", "must be an access token type (access_token or jwt) with into: the account sends it as its token")
    end
  end
  return p, into
end

-- The result a caller sees: the token fields of the reply (tokens only
-- when `with_tokens`), expires_in and expires_at from the record.
local function result_of(fields, rec, with_tokens, into)
  local r = setmetatable({
    issued_token_type = type(fields.issued_token_type) == "string" and fields.issued_token_type or nil,
    token_type = type(fields.token_type) == "string" and fields.token_type or nil,
    scope = rec.scope,
    expires_at = rec.expires_at,
    expires_in = rec.expires_at and math.floor(rec.expires_at - core.now() + 0.5) or nil,
    has_refresh_token = rec.refresh_token ~= nil,
    stored_in = into and into.id or nil,
  }, Result)
  if with_tokens then
    r.access_token, r.refresh_token = rec.access_token, rec.refresh_token
  end
  return r
end

--- Performs `account:exchange(opts)` (see README "Token exchange"): the
-- result table, or nil and an error.
-- @tparam connkit.account.Account self the account whose client makes the
--   exchange
-- @tparam table opts the options of account:exchange
-- @treturn[1] table the result (see account:exchange)
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
-- @raise for a bad option, or an account whose auth is not oauth2
function M.exchange(self, opts)
  if self.integration.auth ~= "oauth2" then
    check.raise(("account '%s': exchange needs auth = \"oauth2\""):format(tostring(self.id)))
  end
  local p, into = check_options(opts)
  local subject, err = token_of(self, "subject_token", opts.subject_token)
  if not subject then return nil, err end
  self:_add_secret(subject)
  local actor
  if opts.actor_token ~= nil then
    actor, err = token_of(self, "actor_token", opts.actor_token)
    if not actor then return nil, err end
    self:_add_secret(actor)
  end

  local params = require("connkit.auth.oauth2").base_params(self) -- (extra_params; the options win)
  for k, v in pairs(p) do params[k] = v end
  params.grant_type = M.GRANT_TYPE
  params.subject_token, params.actor_token = subject, actor
  local headers = {}
  local ok, aerr = endpoint.authenticate(self, params, headers)
  if not ok then return nil, aerr end
  local url, uerr = discovery.url(self, "token_url")
  if not url then return nil, uerr end
  -- always POST (RFC 8693 2.1): the tokens never go into a URL
  local what = "token endpoint (token exchange)"
  local fields, ferr = endpoint.call(self, url, "POST", params, headers, what)
  if not fields then return nil, ferr end
  local rec, rerr = endpoint.token_record(into or self, fields, what)
  if not rec then return nil, rerr end
  self:_add_secret(rec.access_token)
  self:_add_secret(rec.refresh_token)
  if not into then return result_of(fields, rec, true) end

  local issued = fields.issued_token_type
  if (issued ~= nil and not USABLE[issued]) or rec.token_type ~= "bearer" then
    return nil, errors.new("token_endpoint", ("%s issued a %s (token_type %s), not an access token that"
      .. " account '%s' could send: nothing stored"):format(what, tostring(issued), rec.token_type, into.id))
  end
  -- the exchanged token replaces the account's tokens whole (a refresh
  -- token of its own grant is not kept: it would renew into another grant)
  rec.source = "token_exchange"
  local iok, ierr = require("connkit.auth.tokens").install(into, rec)
  if not iok then return nil, ierr end
  return result_of(fields, rec, false, into)
end

return M
