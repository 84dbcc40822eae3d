--- What every account command of connkit starts with: the definition
-- loaded and checked, the store opened, parameters and credentials
-- resolved, the account made.
-- @module connkit.cli.context
local connkit = require "connkit"
local fail = require "connkit.cli.fail"
local secrets = require "connkit.cli.secrets"
local store = require "connkit.cli.store"

local M = {}

--- The integration in the definition file `path` (a JSON or Lua file).
-- @tparam string path the file
-- @treturn connkit.integration.Integration the integration (a mistake stops
--   with status 1)
function M.definition(path)
  local f = io.open(path, "rb")
  if not f then fail.usage("cannot read the definition " .. path) end
  f:close()
  return fail.guard(connkit.load, path)
end

-- Credential names that are not secrets (a plain value is fine for them),
-- as the library counts them (connkit.account).
local PUBLIC = { username = true, client_id = true, private_key = true }

local function public_credentials(integ)
  if integ.auth == "custom_token" and integ.custom_token.public_credentials then
    return integ.custom_token.public_credentials
  end
  return PUBLIC
end

--- The account the arguments `a` name: { integration, account, store,
-- id }. Parameters given with --param are remembered (secret ones are not).
-- @tparam table a the parsed arguments
-- @treturn table { integration =, account =, store =, id = }
function M.account(a)
  local integ = M.definition(a.def)
  local id = a.account or integ.key
  local secret_params = integ.secret_parameters or {}
  local given = secrets.resolve("--param", a.param, function(name) return not secret_params[name] end)
  local public = public_credentials(integ)
  local creds = secrets.resolve("--credential", a.credential, function(name) return public[name] end)
  local st = store.open(store.dir(a.store), integ)
  local params = {}
  for k, v in pairs(store.remembered(st, id)) do
    if integ.parameters[k] and not secret_params[k] then params[k] = v end
  end
  for k, v in pairs(given) do params[k] = v end
  local made, account = pcall(integ.account, integ, { id = id, parameters = params, credentials = creds, store = st })
  if not made then
    if fail.is(account) then error(account, 0) end
    local msg = fail.clean(account)
    if msg:find("missing credentials:", 1, true) then
      msg = msg .. " (give --credential NAME=@env:VAR, NAME=@file:PATH, or NAME alone to be asked)"
    elseif msg:find("missing required parameters:", 1, true) then
      msg = msg .. " (give --param NAME=VALUE; it is remembered for the account)"
    end
    fail.usage(msg)
  end
  if next(given) then
    local keep, changed = {}, false
    local before = store.remembered(st, id)
    for k, v in pairs(params) do
      if not secret_params[k] then
        keep[k] = v
        if before[k] ~= v then changed = true end
      end
    end
    if changed then store.remember(st, id, keep) end
  end
  return { integration = integ, account = account, store = st, id = id }
end

return M
