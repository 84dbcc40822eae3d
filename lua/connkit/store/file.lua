--- Encrypted file token store: one file per account in a private directory.
--
-- Each record is JSON sealed with AES-256-GCM (a fresh random nonce per
-- write); the account id is bound as associated data, so a file copied onto
-- another account's name does not open. Files are written to a temp file,
-- fsynced, renamed over the old one, and the directory is fsynced: a crash
-- or `kill -9` at any moment leaves the old record or the new one (the temp
-- files such a crash leaves are removed when a store opens the directory,
-- see STALE_TEMP_AGE). Files are
-- 0600, the directory is created 0700. A wrong key or a changed file gives
-- `err.code == "store_auth"` and the file is left as it is.
--
-- `lock(id)` takes an exclusive `flock` on a per-account lock file, so
-- processes sharing the directory refresh one at a time.
-- @module connkit.store.file
local core = require "connkit.core"
local cjson = require "cjson"
local errors = require "connkit.errors"
local common = require "connkit.store.common"
local envelope = require "connkit.store.envelope"
local check = require "connkit.check"
local encode_json = require("connkit.json").encode
local raise = check.raise

local M = {}

local MAGIC = "CKS1"                  -- file format tag, also bound as AAD
local DEFAULT_LOCK_TIMEOUT = 60       -- seconds
-- A temp file that no writer holds (a live one keeps a flock on it until
-- the rename) is removed when the store opens its directory once it is
-- this old (seconds), or at once when its writer's PID is gone.
local STALE_TEMP_AGE = 60
-- (key and key_file have checks of their own: load_key)
local OPTIONS = { key = "any", key_file = "any", lock_timeout = "wait" }

-- Locks this Lua state holds, by lock path (weak: a dropped unlock function
-- lets its lock be collected, which releases the flock).
local held = setmetatable({}, { __mode = "v" })

-- File name stem for an id: readable prefix + hash, safe for any id.
local function stem(id)
  local readable = id:gsub("[^%w%-_]", "_"):sub(1, 40)
  return readable .. "-" .. core.hex(core.sha256(id)):sub(1, 32)
end

local method = common.method
local function check_id(id, fname) common.check_id("connkit.store.file", id, fname) end

--- A store keeping one encrypted file per account in `dir`.
-- @tparam string dir directory (created 0700 with missing parents)
-- @tparam table opts `key` (base64 of 32 random bytes, e.g. from
--   `openssl rand -base64 32`) or `key_file` (a file holding that base64 or
--   the 32 raw bytes; refused when group or others may read it);
--   `lock_timeout` seconds `lock` waits (default 60)
-- @treturn table the store: `get(id)`, `put(id, record)`, `lock(id)`
--   (callable with `.` or `:`)
function M.new(dir, opts)
  if type(dir) ~= "string" or dir == "" then
    raise("connkit.store.file: argument 'dir' must be a non-empty path string, got " .. type(dir))
  end
  opts = check.options("connkit.store.file", opts, OPTIONS)
  local lock_timeout = opts.lock_timeout
  if lock_timeout == nil then lock_timeout = DEFAULT_LOCK_TIMEOUT end
  local key = envelope.load_key("connkit.store.file", opts, true)
  dir = dir:gsub("(.)/+$", "%1")
  local ok, _, msg = core.mkdir(dir, 448) -- 0700
  if not ok then raise("connkit.store.file: argument 'dir': " .. msg) end
  -- what crashed writes left behind (best effort: a directory that cannot
  -- be listed fails on the first get or put instead, naming the path)
  core.remove_stale_temps(dir, STALE_TEMP_AGE)

  local store = { dir = dir }

  local function path_of(id) return dir .. "/" .. stem(id) end

  store.get = method(store, function(id)
    check_id(id, "get")
    local path = path_of(id) .. ".rec"
    local data, code, err = core.read_file(path)
    if not data then
      if code == "not_found" then return nil end
      return nil, errors.new(code, "connkit.store.file: " .. err)
    end
    local plain, why = envelope.open(key, MAGIC, id, data)
    if why == "tag" then
      return nil, errors.new("store_auth",
        ("connkit.store.file: %s is not a connkit record"):format(path))
    end
    if not plain then
      return nil, errors.new("store_auth", ("connkit.store.file: the record of account %q "
        .. "in %s does not authenticate (wrong key, changed file, or another "
        .. "account's file)"):format(id, path))
    end
    local okd, rec = pcall(cjson.decode, plain)
    if not okd or type(rec) ~= "table" then
      return nil, errors.new("store_corrupt",
        ("connkit.store.file: the record of account %q is not a JSON object"):format(id))
    end
    return check.from_json(rec, cjson.null)
  end)

  store.put = method(store, function(id, record)
    check_id(id, "put")
    local path = path_of(id) .. ".rec"
    if record == nil then
      local okr, err = os.remove(path)
      if not okr and core.read_file(path) then
        return nil, errors.new("io", "connkit.store.file: " .. tostring(err))
      end
      return true
    end
    local copy = common.copy_record(record, "connkit.store.file: put")
    local json, jerr = encode_json(copy)
    if not json then raise("connkit.store.file: put: the record cannot be stored: " .. jerr) end
    local sealed = envelope.seal(key, MAGIC, id, json)
    local okw, code, err = core.write_file_atomic(path, sealed, 384) -- 0600
    if not okw then return nil, errors.new(code, "connkit.store.file: " .. err) end
    return true
  end)

  store.lock = method(store, function(id, timeout)
    check_id(id, "lock")
    -- a timeout given (connkit passes what the request has left) only shortens the wait
    if type(timeout) ~= "number" or not (timeout <= lock_timeout) then timeout = lock_timeout end
    local path = path_of(id) .. ".lock"
    if held[path] then
      return nil, errors.new("lock_busy", ("connkit.store.file: the lock of account %q "
        .. "is already held in this process"):format(id))
    end
    local lk, code, err = core.lock_file(path, timeout)
    if not lk then return nil, errors.new(code, "connkit.store.file: " .. err) end
    held[path] = lk
    return function()
      if held[path] == lk then held[path] = nil end
      lk:unlock()
      return true
    end
  end)

  return setmetatable(store, {
    __tostring = function() return "connkit.store.file(" .. dir .. ")" end,
  })
end

return M
