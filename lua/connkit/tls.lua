--- TLS settings of an integration and of an account: the CA to trust
-- (`ca_file`) and the client certificate for mutual TLS (RFC 8705:
-- `cert_file`, `key_file`, `key_password`). The client certificate goes
-- with every call to the token endpoints (and the issuer's metadata) and
-- with the API requests that carry the account's credentials.
--
-- In a definition `cert_file`, `key_file` and `key_password` are templates
-- (`key_password = "{keyPassword}"` fills from a secret parameter); an
-- account's own `tls` gives plain values and overrides the integration's
-- field by field. The password is a secret: it is scrubbed from every
-- message and never shown by `tostring`.
-- @module connkit.tls
local core = require "connkit.core"
local check = require "connkit.check"

local M = {}

local FIELDS = { ca_file = true, cert_file = true, key_file = true, key_password = true }

-- client_auth methods where the certificate is the client's credential
M.CERT_AUTH = { tls_client_auth = true, self_signed_tls_client_auth = true }

--- Checks a `tls` block (an integration's when `names` is given: the
-- client certificate fields are then templates over those parameters; an
-- account's otherwise: plain strings). Raises naming the field.
-- @return { ca_file =, cert_file =, key_file =, key_password = }
-- @tparam table ctx the check context
-- @tparam[opt] table t the tls block
-- @tparam string field its name in messages
-- @tparam[opt] table names the parameter names (an integration's block)
function M.check(ctx, t, field, names)
  if t == nil then return {} end
  check.table(ctx, field, t)
  check.known_fields(ctx, t, field, FIELDS)
  local out = { ca_file = check.string(ctx, field .. ".ca_file", t.ca_file) }
  for _, f in ipairs({ "cert_file", "key_file", "key_password" }) do
    local v = check.string(ctx, field .. "." .. f, t[f])
    if v ~= nil and names then v = check.template(ctx, field .. "." .. f, v, "raw", names) end
    out[f] = v
  end
  -- (an account's may give one and take the other from the integration:
  -- checked once merged, in M.setup)
  if names then
    if (out.cert_file == nil) ~= (out.key_file == nil) then
      ctx.fail(field .. (out.cert_file and ".key_file" or ".cert_file"),
        "is required with " .. field .. (out.cert_file and ".cert_file" or ".key_file")
        .. " (both may name one file that holds the certificate and the key)")
    end
    if out.key_password ~= nil and out.key_file == nil then
      ctx.fail(field .. ".key_password", "is for the key of tls.key_file, which is not set")
    end
  end
  return out
end

--- Raises unless an integration whose oauth2.client_auth is a certificate
-- method has a client certificate (RFC 8705 2).
-- @tparam table ctx the check context
-- @tparam[opt] table integ_tls the integration's checked tls block
-- @tparam string client_auth oauth2.client_auth
-- @raise naming the field
function M.check_client_auth(ctx, integ_tls, client_auth)
  if M.CERT_AUTH[client_auth] and not (integ_tls.cert_file and integ_tls.key_file) then
    ctx.fail("tls.cert_file", ('is required: oauth2.client_auth = "%s" authenticates the client with its'
      .. ' certificate (set tls.cert_file and tls.key_file; a template such as "{certFile}" lets each'
      .. " account give its own)"):format(client_auth))
  end
end

--- Gives an account its TLS settings: `acct._ca_file` and
-- `acct._client_tls` (a core.tls_client, or nil), the integration's
-- overridden field by field by the account's own `tls` option. Raises
-- naming the field when a template cannot be filled.
-- @tparam connkit.account.Account acct the account being created
-- @tparam table ctx the account's check context
-- @tparam[opt] table opts_tls the account's tls option
-- @raise naming the field
function M.setup(acct, ctx, opts_tls)
  local integ = acct.integration.tls
  local own = M.check(ctx, opts_tls, "tls")
  acct._ca_file = own.ca_file or integ.ca_file
  local values = {}
  for _, f in ipairs({ "cert_file", "key_file", "key_password" }) do
    local v = own[f]
    if v == nil and integ[f] ~= nil then
      local err
      v, err = acct:fill(integ[f])
      if not v then ctx.fail("tls." .. f, "cannot be filled: " .. err.message) end
      if v == "" then ctx.fail("tls." .. f, "is empty once filled in") end
    end
    values[f] = v
  end
  if values.key_password then acct:_add_secret(values.key_password) end
  if (values.cert_file == nil) ~= (values.key_file == nil) then
    ctx.fail(values.cert_file and "tls.key_file" or "tls.cert_file", "is required with "
      .. (values.cert_file and "tls.cert_file" or "tls.key_file"))
  end
  if values.key_password and not values.key_file then
    ctx.fail("tls.key_password", "is for the key of tls.key_file, which is not set")
  end
  if values.cert_file then
    acct._client_tls = core.tls_client(values.cert_file, values.key_file, values.key_password)
  end
end

return M
