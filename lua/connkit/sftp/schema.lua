--- The `sftp` block of a definition and SFTP credentials: field-by-field
-- checks (see connkit.sftp for the sessions).
-- @module connkit.sftp.schema
local options = require "connkit.options"

local M = {}

local DEF_FIELDS = {
  host = true, port = true, known_hosts = true, host_key = true, timeout = true,
  legacy_algorithms = true, chunk_size = true,
}
local CRED_FIELDS = {
  username = true, password = true, private_key = true, private_key_data = true, passphrase = true,
}
--- A pinned host key as `ssh-keygen -l -E sha256` prints it.
M.FINGERPRINT = "^SHA256:[%w+/]+=?$"
local FINGERPRINT = M.FINGERPRINT

--- A whole number as an integer: JSON decoders (Debian's lua-cjson on Lua
-- 5.4) give 37535.0 for 37535, which must not reach "[host]:port" strings
-- or C integer arguments. Numbers that are not whole are returned as is.
-- @param n the value
-- @return n, an integer when it is whole
function M.whole(n)
  if math.tointeger and type(n) == "number" then return math.tointeger(n) or n end
  return n
end
local whole = M.whole

--- Checks the options table of a public SFTP call against `spec` (option
-- name -> a kind of connkit.options: "boolean", "callable", "timeout",
-- "chunk_size", "mode") and raises at the user's line naming the call and
-- the option, e.g. "sftp:get: unknown option 'resum'". Returns the options
-- (an empty table for nil).
-- @tparam string what the call, for the message
-- @tparam[opt] table opts the options given
-- @tparam table spec option name -> kind
-- @treturn table the options
-- @raise naming the option
function M.check_opts(what, opts, spec)
  return options.check(what, opts, spec)
end

--- Raises unless v is a string (a path or mode argument), naming it.
-- @tparam string what the call
-- @tparam string name the argument
-- @param v the value
-- @return v
-- @raise unless v is a string
function M.check_string(what, name, v)
  return options.argument(what, name, v, "string")
end

--- Raises unless v is a time limit in seconds (at most a day).
-- @tparam string what the call
-- @tparam string name the argument
-- @param v the value
-- @return v
-- @raise unless v is a number of seconds
function M.check_timeout(what, name, v)
  return options.argument(what, name, v, "timeout")
end

--- A short description of a bad value for error messages: its type, and the
-- value itself only for numbers and booleans (never a string: it could be a
-- secret in the wrong place).
-- @param v the value
-- @treturn string the description
function M.describe(v)
  if type(v) == "number" or type(v) == "boolean" then return type(v) .. " " .. tostring(v) end
  return "a " .. type(v)
end

local function template(env, field, v)
  if env and env.template then return (env.template(field, v, "raw")) end
  return v
end

--- Validates the `sftp` block of a definition; returns it normalized
-- (templates compiled when the integration passes `env`).
-- @tparam table block the `sftp` table
-- @tparam function fail `fail(field, message)` raises naming the field
-- @tparam[opt] table env the integration's helpers (template compiler)
-- @treturn table the normalized block
function M.check_definition(block, fail, env)
  if type(block) ~= "table" then fail("sftp", "must be a table") end
  for k in pairs(block) do
    if not DEF_FIELDS[k] then fail("sftp." .. tostring(k), "is not a known field of sftp") end
  end
  local out = {}
  if type(block.host) ~= "string" or block.host == "" then fail("sftp.host", "is required (a host name or template)") end
  out.host = template(env, "sftp.host", block.host)
  local port = block.port == nil and 22 or block.port
  if type(port) == "number" then
    if port % 1 ~= 0 or port < 1 or port > 65535 then fail("sftp.port", "must be an integer 1-65535") end
    out.port = whole(port)
  elseif type(port) == "string" and port ~= "" then
    if port:find("^%d+$") then
      local n = tonumber(port)
      if n < 1 or n > 65535 then fail("sftp.port", "must be an integer 1-65535") end
      out.port = whole(n)
    else
      out.port = template(env, "sftp.port", port)
    end
  else
    fail("sftp.port", "must be an integer 1-65535 or a template string")
  end
  if block.known_hosts == nil and block.host_key == nil then
    fail("sftp", "needs known_hosts (a file path) or host_key (a SHA256:... fingerprint) to verify the server")
  end
  if block.known_hosts ~= nil then
    if type(block.known_hosts) ~= "string" or block.known_hosts == "" then
      fail("sftp.known_hosts", "must be a file path")
    end
    out.known_hosts = template(env, "sftp.known_hosts", block.known_hosts)
  end
  if block.host_key ~= nil then
    local k = block.host_key
    if type(k) ~= "string" then fail("sftp.host_key", "must be a string like SHA256:...") end
    if k:find("{", 1, true) then
      out.host_key = template(env, "sftp.host_key", k)
    elseif not k:find(FINGERPRINT) then
      fail("sftp.host_key", "must be a SHA256:... fingerprint as `ssh-keygen -l -E sha256` prints it")
    else
      out.host_key = k:gsub("=$", "")
    end
  end
  out.timeout = options.field({ fail = fail }, "sftp.timeout", block.timeout, "timeout", 30)
  if block.legacy_algorithms ~= nil and type(block.legacy_algorithms) ~= "boolean" then
    fail("sftp.legacy_algorithms", "must be true or false")
  end
  out.legacy_algorithms = block.legacy_algorithms == true
  out.chunk_size = whole(options.field({ fail = fail }, "sftp.chunk_size", block.chunk_size, "chunk_size", 1024 * 1024))
  return out
end

--- Validates SFTP credentials: `username` and one or more of `password`,
-- `private_key` (a file path), `private_key_data` (the key itself);
-- `passphrase` for an encrypted key. Returns a normalized copy.
-- @tparam table creds the credentials
-- @tparam function fail fail(field, message) raises naming the field
-- @treturn table the normalized copy
function M.check_credentials(creds, fail)
  if type(creds) ~= "table" then fail("credentials", "must be a table") end
  local out = {}
  for k, v in pairs(creds) do
    if not CRED_FIELDS[k] then fail("credentials." .. tostring(k), 'is not used by auth = "sftp"') end
    if type(v) ~= "string" then fail("credentials." .. k, "must be a string") end
    if v == "" then
      fail("credentials." .. k, k == "passphrase" and "must not be empty (leave it out for a key without one)"
        or "must not be empty")
    end
    out[k] = v
  end
  if out.username == nil or out.username == "" then fail("credentials.username", "is required") end
  if out.private_key and out.private_key_data then
    fail("credentials.private_key", "and private_key_data cannot both be given")
  end
  if not (out.password or out.private_key or out.private_key_data) then
    fail("credentials", "need a password, a private_key file or private_key_data")
  end
  if out.passphrase and not (out.private_key or out.private_key_data) then
    fail("credentials.passphrase", "is only for an encrypted private key")
  end
  return out
end

return M
