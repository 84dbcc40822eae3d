--- Pushed Authorization Requests (RFC 9126): the parameters of an
-- authorization request are POSTed to the server's PAR endpoint,
-- authenticated as the client, and the URL the user is sent to carries only
-- `client_id` and the `request_uri` the server returned. PKCE verifier,
-- state and nonce stay with the client as without PAR.
-- @module connkit.auth.par
local check = require "connkit.check"
local errors = require "connkit.errors"
local endpoint = require "connkit.auth.token_endpoint"
local discovery = require "connkit.auth.discovery"
local urls = require "connkit.http.url"

local M = {}

--- The definition fields this module reads (merged into oauth2's).
M.FIELDS = { par = true, par_url = true }

--- Checks `oauth2.par` and `oauth2.par_url` into `out`: par is true
-- (always push), false (never), or absent (push when the issuer's metadata
-- says require_pushed_authorization_requests); par_url names the endpoint
-- (else it comes from the metadata's pushed_authorization_request_endpoint)
-- and, without par = false, turns PAR on.
-- @tparam table b the oauth2 block as given
-- @tparam table out the normalized block, completed here
-- @tparam table env the check environment (ctx, secure_url, ...; see
--   connkit.auth.oauth2.check_definition)
-- @raise naming the field
function M.check_definition(b, out, env)
  local ctx = env.ctx
  out.par = check.boolean(ctx, "oauth2.par", b.par, nil)
  if b.par_url ~= nil then
    out.par_url = env.secure_url("oauth2.par_url", b.par_url)
    if out.par == nil then out.par = true end
  end
  if out.par and out.grant_type ~= "authorization_code" then
    ctx.fail("oauth2.par", 'is for grant_type = "authorization_code"')
  end
end

-- Whether this account's authorization requests are pushed (the metadata,
-- when it decides, was resolved already by the authorization endpoint's URL).
local function wanted(acct)
  local par = acct.integration.oauth2.par
  if par ~= nil then return par end
  local meta = discovery.metadata(acct)
  return type(meta) == "table" and meta.require_pushed_authorization_requests == true
end

--- Pushes the authorization request `q` (the query it would carry) when
-- the account uses PAR, and returns the query to send the user with
-- instead: { client_id =, request_uri = }. Returns nil when PAR is not
-- used; false and an error when the push failed (the server's OAuth error as
-- err.code, `config` when no PAR endpoint is known, `token_endpoint` for a
-- reply without request_uri).
-- @tparam connkit.account.Account acct the account
-- @tparam table q the authorization request's query
-- @treturn[1] table|nil the query to send instead, or nil
-- @treturn[2] boolean false
-- @treturn[2] connkit.errors.Error the error
function M.push(acct, q)
  if not wanted(acct) then return nil end
  local url, uerr = discovery.url(acct, "par_url")
  if not url then
    return false, errors.new(uerr.code, "pushed authorization request (oauth2.par): " .. uerr.message, uerr)
  end
  local params, headers = {}, {}
  for k, v in pairs(q) do params[k] = v end
  local ok, aerr = endpoint.authenticate(acct, params, headers)
  if not ok then return false, aerr end
  params.client_id = q.client_id -- (RFC 9126 2.1: also when the client authenticates by header)
  local what = "pushed authorization request endpoint"
  local fields, err = endpoint.call(acct, url, "POST", params, headers, what)
  if not fields then return false, err end
  if type(fields.request_uri) ~= "string" or fields.request_uri == "" then
    return false, errors.new("token_endpoint", what .. " " .. urls.safe_url(url) .. " answered without a request_uri")
  end
  return { client_id = q.client_id, request_uri = fields.request_uri }
end

return M
