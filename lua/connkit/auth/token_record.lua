--- A token record { access_token, refresh_token, expires_at, issued_at,
-- scope, token_type }: when it is due for renewal, and whether it can be
-- used and stored. (The state and the refresh rules: connkit.auth.tokens.)
-- @module connkit.auth.token_record
local core = require "connkit.core"
local errors = require "connkit.errors"

local M = {}

--- When a token with this record should be renewed (epoch seconds).
-- Long-lived tokens: `window` seconds before expiry. A token whose lifetime
-- is under window + min_ttl would spend (nearly) all its life inside the
-- window, so it is renewed when `fraction` of its lifetime is left instead.
-- @tparam table record the token record (expires_at, issued_at)
-- @tparam table rules the refresh rules (window, min_ttl, fraction)
-- @treturn number the time (math.huge when it never expires)
function M.due_at(record, rules)
  local exp = record.expires_at
  if not exp then return math.huge end
  local life = exp - (record.issued_at or exp)
  if life >= rules.window + rules.min_ttl then return exp - rules.window end
  return exp - life * rules.fraction
end

local function finite(v)
  return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
end

--- Whether a token record can be used and stored: true, or nil and an
-- error (code "token_endpoint") saying why without showing the token. It
-- must have an access token that can be sent (no CR, LF or NUL; the
-- auth_token template takes it), a refresh token that is a string if any,
-- and finite numbers for its times (JSON cannot hold others).
-- @tparam connkit.account.Account acct the account
-- @param rec the record
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.check_record(acct, rec)
  if type(rec) ~= "table" then return nil, errors.new("token_endpoint", "the token record is not a table") end
  local tok = rec.access_token
  if type(tok) ~= "string" or tok == "" then
    return nil, errors.new("token_endpoint", "the token record has no access token")
  end
  if not core.header_safe(tok) then
    return nil, errors.new("token_endpoint", "the access token holds CR, LF or NUL; refused")
  end
  local _, ferr = acct:fill(acct.integration.auth_token.template, nil, { token = tok })
  if ferr then return nil, errors.new("token_endpoint", "the access token cannot be sent: " .. ferr.message) end
  if rec.refresh_token ~= nil and (type(rec.refresh_token) ~= "string" or rec.refresh_token == "") then
    return nil, errors.new("token_endpoint", "the refresh token is not a non-empty string")
  end
  for _, f in ipairs({ "expires_at", "issued_at" }) do
    if rec[f] ~= nil and not finite(rec[f]) then
      return nil, errors.new("token_endpoint", ("the token record's %s is not a finite number"):format(f))
    end
  end
  return require("connkit.auth.token_metadata").check_record(acct, rec)
end

return M
