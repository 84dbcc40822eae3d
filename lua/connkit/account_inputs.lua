--- What a new account is given: its parameters and credentials, checked
-- against the integration (connkit.account calls these at creation).
-- @module connkit.account_inputs
local core = require "connkit.core"
local check = require "connkit.check"

local M = {}

-- credential fields per auth type: name -> required?
local CREDENTIALS = {
  none = {},
  api_token = { token = true },
  basic = { username = true, password = true },
  oauth2 = { client_id = false, client_secret = false, client_key = false },
  jwt = {},
}

-- Every credential is a secret (scrubbed from every message) except these:
-- names and identifiers, and a key's file path (its contents are a secret).
-- A custom token declares its own (custom_token.public_credentials,
-- default { "username" }).
local PUBLIC_CREDENTIALS = { username = true, client_id = true, private_key = true }

--- The credential names of an account of `integ` that are not secrets.
-- @tparam connkit.integration.Integration integ the integration
-- @treturn table the set of names
function M.public_credentials(integ)
  if integ.auth == "custom_token" then return integ.custom_token.public_credentials end
  return PUBLIC_CREDENTIALS
end

--- The parameter values of a new account of `integ`: the given ones
-- (checked), then the defaults; raises (ctx.fail) naming a wrong or missing one.
-- @tparam connkit.integration.Integration integ the integration
-- @tparam table ctx the account's check context
-- @tparam[opt] table given the parameters option
-- @treturn table name -> value
-- @raise naming the parameter
function M.parameters(integ, ctx, given)
  local values = {}
  if given ~= nil then
    check.table(ctx, "parameters", given)
    for k, v in pairs(given) do
      if not integ.parameters[k] then
        ctx.fail("parameters." .. tostring(k), "is not a parameter of this integration")
      end
      if type(v) ~= "string" and type(v) ~= "number" then
        ctx.fail("parameters." .. k, "must be a string or a number")
      end
      values[k] = v
    end
  end
  local missing = {}
  local from_token = require("connkit.auth.token_metadata").names(integ) -- (filled by the token)
  for name, p in pairs(integ.parameters) do
    if values[name] == nil then
      if p.default ~= nil then values[name] = p.default
      elseif p.required and not from_token[name] then missing[#missing + 1] = name end
    end
  end
  if #missing > 0 then
    table.sort(missing)
    ctx.fail(nil, "missing required parameters: " .. table.concat(missing, ", "))
  end
  return values
end

--- The credentials of a new account of `integ`, checked against what its
-- auth type uses; raises (ctx.fail) naming a wrong or missing one.
-- @tparam connkit.integration.Integration integ the integration
-- @tparam table ctx the account's check context
-- @tparam[opt] table creds the credentials option
-- @treturn table the credentials
-- @raise naming the credential
function M.credentials(integ, ctx, creds)
  local auth = integ.auth
  creds = creds or {}
  check.table(ctx, "credentials", creds)
  local spec
  if auth == "sftp" then
    return require("connkit.sftp").check_credentials(creds, ctx.fail) or creds
  elseif auth == "custom_token" then
    spec = {}
    for n in pairs(integ.custom_token.credential_names) do spec[n] = true end
  else
    spec = CREDENTIALS[auth]
  end
  local out, missing = {}, {}
  for k, v in pairs(creds) do
    if spec[k] == nil then
      ctx.fail("credentials." .. tostring(k), ('is not used by auth = "%s"'):format(auth))
    end
    if type(v) == "number" then v = core.format_number(v) end
    if type(v) ~= "string" then
      ctx.fail("credentials." .. k, "must be a string, not a " .. type(v))
    end
    if v == "" then
      ctx.fail("credentials." .. k, "must not be empty (an unset environment variable?)")
    end
    out[k] = v
  end
  for k, required in pairs(spec) do
    if required and out[k] == nil then missing[#missing + 1] = k end
  end
  if #missing > 0 then
    table.sort(missing)
    ctx.fail(nil, "missing credentials: " .. table.concat(missing, ", "))
  end
  return out
end

return M
