--- Token stores. A store is any table with three functions, called with a
-- dot (plain functions, not methods):
--
--   `store.get(id)`          -> record, or nil when there is none, or nil, err
--   `store.put(id, record)`  -> true, or nil, err (a nil record removes it)
--   `store.lock(id[, max_wait])` -> unlock function [, held lock], or nil, err
--
-- The held lock (optional; the Redis store gives one) makes the commit
-- fenced: see connkit.store.common (`account_lock`).
--
-- A record is a plain table (`access_token`, `refresh_token`, `expires_at`,
-- `scope`, `token_type` and any other string, number or boolean fields).
-- `lock` must exclude every other holder of the same id that shares the
-- store (other processes too, for a shared store) until the unlock function
-- is called; the refresh path is lock, get, refresh if still needed, put,
-- unlock. The built-in stores accept both `store.get(id)` and `store:get(id)`.
-- @module connkit.store
local memory = require "connkit.store.memory"
local file = require "connkit.store.file"
local shared = require "connkit.store.shared"
local check = require "connkit.check"

local store = {}

--- A new in-process store (the default). It takes no options.
-- @tparam[opt] table opts nil or an empty table
-- @treturn table the store: get(id), put(id, record), lock(id)
-- @raise for any option
function store.memory(opts)
  check.options("connkit.store.memory", opts, {})
  return memory.new()
end

--- A new encrypted file store; see `connkit.store.file`.
-- @tparam string dir the directory (created 0700 with missing parents)
-- @tparam table opts `key` (base64 of 32 random bytes) or `key_file`,
--   optional `lock_timeout` (seconds, default 60)
-- @treturn table the store: get(id), put(id, record), lock(id)
-- @raise for a bad dir, a missing or bad key, a key file others may read, an
--   unknown option
function store.file(dir, opts)
  return file.new(dir, opts)
end

--- A new store on an OpenResty shared dict; see `connkit.store.shared`.
-- Raises outside OpenResty, and for a dict nginx.conf does not declare.
-- @tparam string dict_name the name in `lua_shared_dict <name> <size>;`
-- @tparam[opt] table opts `key` or `key_file`, `lock_timeout`, `lock_ttl`
-- @treturn table the store: get(id), put(id, record), lock(id, max_wait)
-- @raise outside OpenResty, for a dict nginx.conf does not declare, for a
--   bad option
function store.shared(dict_name, opts)
  return shared.new(dict_name, opts)
end

--- A new Redis store (shared by every process and host that uses the same
-- server and prefix); see `connkit.store.redis` and README "Redis store".
-- @tparam table opts url (or host, port, db, password, socket), prefix, key
--   or key_file (or plaintext = true), lock_ttl, lock_timeout, timeout
-- @treturn table the store: get(id), put(id, record), lock(id, max_wait),
--   close()
-- @raise for a bad or unknown option, naming it (an unreachable server is a
--   run-time error of the calls: code "store")
function store.redis(opts)
  return require("connkit.store.redis").new(opts)
end

local function callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and type(mt.__call) == "function"
end

--- Checks that `s` follows the store protocol; raises naming what is missing.
-- @param s the candidate store
-- @tparam[opt] string what how to name it in the error (default "store")
-- @return s
-- @raise when s is not a table with get, put and lock functions
function store.check(s, what)
  what = what or "store"
  if type(s) ~= "table" then
    check.raise(("%s must be a table with get, put and lock functions, got %s"):format(what, type(s)))
  end
  for _, name in ipairs({ "get", "put", "lock" }) do
    if not callable(s[name]) then
      check.raise(("%s must have a %s function (get(id), put(id, record), lock(id) -> unlock)")
        :format(what, name))
    end
  end
  return s
end

return store
