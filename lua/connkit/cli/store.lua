--- The connkit command's token store: connkit's encrypted file store in
-- `--store DIR` or $XDG_DATA_HOME/connkit (~/.local/share/connkit), one
-- subdirectory per integration key. The key comes from CONNKIT_KEY (base64
-- of 32 bytes), else from the key file CONNKIT_KEY_FILE names, else from
-- $XDG_CONFIG_HOME/connkit/store.key (~/.config/connkit/store.key), which
-- is made (0600) on first use, and stderr says where.
--
-- Beside the tokens, the store keeps the non-secret parameters an account
-- was last given (--param), so later commands need not repeat them.
-- @module connkit.cli.store
local connkit = require "connkit"
local core = require "connkit.core"
local fail = require "connkit.cli.fail"

local M = {}

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function home_dir(var, fallback)
  local v = os.getenv(var)
  if v and v ~= "" then return v end
  local home = os.getenv("HOME")
  if not home or home == "" then fail.usage("neither " .. var .. " nor HOME is set: give --store DIR") end
  return home .. "/" .. fallback
end

--- The store directory: --store DIR, else $XDG_DATA_HOME/connkit.
-- @tparam[opt] string opt the --store argument
-- @treturn string the directory
function M.dir(opt)
  if opt then return opt end
  return home_dir("XDG_DATA_HOME", ".local/share") .. "/connkit"
end

-- The default key file, made once with a fresh random key.
local function default_key_file()
  local path = home_dir("XDG_CONFIG_HOME", ".config") .. "/connkit/store.key"
  local f = io.open(path, "rb")
  if f then f:close() return path end
  local dir = path:match("^(.*)/[^/]+$")
  if not os.execute("mkdir -p -m 700 " .. quote(dir)) then fail.exit(5, "cannot create " .. dir) end
  -- made under umask 077 and renamed into place: never readable by others,
  -- never half written; a concurrent first use keeps the first key made
  local tmp = path .. ".tmp." .. core.hex(core.random(6))
  local ok = os.execute("umask 077 && : > " .. quote(tmp))
  local out = (ok == true or ok == 0) and io.open(tmp, "wb")
  if not out then fail.exit(5, "cannot write the key file " .. path) end
  out:write(core.b64encode(core.random(32)), "\n")
  out:close()
  local linked = os.execute("ln " .. quote(tmp) .. " " .. quote(path) .. " 2>/dev/null")
  os.remove(tmp)
  if linked == true or linked == 0 then
    io.stderr:write("connkit: made a new store key in ", path, " (0600); keep it, or set CONNKIT_KEY\n")
  end
  return path
end

--- Options for connkit.store.file: the key, from where it is found.
-- @treturn table `{ key = }` or `{ key_file = }`
function M.key_options()
  local key = os.getenv("CONNKIT_KEY")
  if key and key ~= "" then return { key = key } end
  local kf = os.getenv("CONNKIT_KEY_FILE")
  if kf and kf ~= "" then return { key_file = kf } end
  return { key_file = default_key_file() }
end

--- The file store for integration `integ` under `dir`.
-- @tparam string dir the store directory
-- @tparam connkit.integration.Integration integ the integration
-- @treturn table the store
function M.open(dir, integ)
  local key = M.key_options()
  return fail.guard(connkit.store.file, dir .. "/" .. integ.key, key)
end

-- The id under which an account's remembered parameters are kept.
local function params_id(id) return "params\n" .. id end

--- The parameters remembered for account `id` (a table, maybe empty).
-- @tparam table store the store
-- @tparam string id the account id
-- @treturn table name -> value
function M.remembered(store, id)
  local rec, err = store.get(params_id(id))
  if err then fail.error(err, "the store") end
  return rec and rec.parameters or {}
end

--- Remembers the non-secret parameters of account `id`.
-- @tparam table store the store
-- @tparam string id the account id
-- @tparam table params the parameters given
function M.remember(store, id, params)
  local ok, err = store.put(params_id(id), { parameters = params })
  if not ok then fail.error(err, "the store") end
end

return M
