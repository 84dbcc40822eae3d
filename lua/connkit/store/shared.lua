--- Token store on an OpenResty shared dict (`lua_shared_dict`): every
-- worker of one nginx sees the same records, and the lock keeps them to one
-- token request per expiry.
--
-- Records are JSON, sealed with the file store's AES-256-GCM envelope when
-- a key is given. Each account has two slots, written in turn, and every
-- record carries a generation number: `get` answers the newer one. A dict
-- replaces a value of another size by freeing it first and then allocating
-- the new one, so a write into a full dict loses what that key held; with
-- two slots it only loses the previous generation, never the record in use.
-- Writes never evict other entries (`safe_set`, `safe_add`): a full dict is
-- a "store" error, not lost records.
--
-- The lock is an entry in the same dict, made with an atomic `safe_add` and
-- an expiry (`lock_ttl`), holding a random owner value; the unlock function
-- removes it only while it still holds that value. Waiters sleep
-- (`ngx.sleep`, backoff up to 50 ms) and try again until `lock_timeout`. A
-- worker killed while it holds the lock blocks the others until the lock
-- expires, no longer.
-- @module connkit.store.shared
local core = require "connkit.core"
local cjson = require "cjson"
local errors = require "connkit.errors"
local common = require "connkit.store.common"
local envelope = require "connkit.store.envelope"
local cosync = require "connkit.cosync"
local shared_rate = require "connkit.store.shared_rate"
local check = require "connkit.check"
local encode_json = require("connkit.json").encode
local raise = check.raise

local M = {}

local WHO = "connkit.store.shared"
local SEALED, PLAIN = "CKD1", "CKJ1"   -- value format tags (SEALED is bound as AAD)
local DEFAULT_LOCK_TIMEOUT = 10        -- seconds a lock(id) waits
local DEFAULT_LOCK_TTL = 30            -- seconds a lock lives unless released
local MAX_PAUSE = 0.05                 -- longest sleep between two tries of the lock
-- (key and key_file have checks of their own: connkit.store.envelope)
local OPTIONS = { key = "any", key_file = "any", lock_timeout = "wait", lock_ttl = "timeout" }

local SLOTS = { "a", "b" }
local function record_key(slot, id) return "connkit/rec/" .. slot .. "/" .. id end
local function lock_key(id) return "connkit/lock/" .. id end

local method = common.method
local function check_id(id, fname) common.check_id(WHO, id, fname) end

-- Sleeps without blocking the worker where the phase allows it (other
-- light threads, and the lock's holder, go on meanwhile); elsewhere (init,
-- set_by_lua, log) the worker sleeps.
local function pause(seconds)
  if cosync.ngx_can_yield() then rawget(_G, "ngx").sleep(seconds) else core.sleep(seconds) end
end

--- A store on the shared dict `dict_name` (needs OpenResty).
-- @tparam string dict_name the name in `lua_shared_dict <name> <size>;`
-- @tparam[opt] table opts `key` (base64 of 32 random bytes) or `key_file`:
--   records are encrypted (without either they are plain JSON in the dict);
--   `lock_timeout` seconds `lock` waits (default 10); `lock_ttl` seconds a
--   lock lives unless released (default 30)
-- @treturn table the store: `get(id)`, `put(id, record)`, `lock(id, max_wait)`,
--   `rate_take(...)` (a rate limit's bucket shared by the workers) (callable
--   with `.` or `:`)
function M.new(dict_name, opts)
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.shared) ~= "table" then
    raise(WHO .. " needs OpenResty (nginx with the Lua module: ngx.shared); "
      .. "outside nginx use connkit.store.file or connkit.store.memory")
  end
  if type(dict_name) ~= "string" or dict_name == "" then
    raise(WHO .. ": argument 'dict_name' must be the name of a lua_shared_dict, got " .. type(dict_name))
  end
  opts = check.options(WHO, opts, OPTIONS)
  local lock_timeout = opts.lock_timeout or DEFAULT_LOCK_TIMEOUT
  local lock_ttl = opts.lock_ttl or DEFAULT_LOCK_TTL
  local key = envelope.load_key(WHO, opts, false)
  local dict = ngx.shared[dict_name]
  if dict == nil then
    raise(("%s: there is no shared dict named %q (declare it in nginx.conf's http block: "
      .. "lua_shared_dict %s 1m;)"):format(WHO, dict_name, dict_name))
  end

  local store = { dict_name = dict_name }
  local where = ("%s(%s)"):format(WHO, dict_name)

  -- the value of a slot -> { g = generation, r = record }, or nil and an error
  local function decode(id, value)
    if type(value) ~= "string" then
      return nil, errors.new("store_corrupt", ("%s: the record of account %q is not a connkit record")
        :format(where, id))
    end
    local plain, why
    if key then
      plain, why = envelope.open(key, SEALED, id, value)
    elseif value:sub(1, #PLAIN) == PLAIN then
      plain = value:sub(#PLAIN + 1)
    else
      why = value:sub(1, #SEALED) == SEALED and "sealed" or "tag"
    end
    if not plain then
      local msg = ({
        sealed = "is encrypted and this store has no key",
        tag = "is not a connkit record, or is not encrypted while this store has a key",
      })[why] or "does not authenticate (wrong key, changed value, or another account's)"
      return nil, errors.new("store_auth", ("%s: the record of account %q %s"):format(where, id, msg))
    end
    local ok, env = pcall(cjson.decode, plain)
    if not ok or type(env) ~= "table" or type(env.g) ~= "number" or type(env.r) ~= "table" then
      return nil, errors.new("store_corrupt", ("%s: the record of account %q is not a JSON record")
        :format(where, id))
    end
    return env
  end

  -- Both slots: state[slot] = the decoded envelope, "bad" or nil (empty);
  -- also the newest envelope and the first error met.
  local function read(id)
    local state, newest, first_err = {}, nil, nil
    for _, slot in ipairs(SLOTS) do
      local value = dict:get(record_key(slot, id))
      if value ~= nil then
        local env, err = decode(id, value)
        if env then
          state[slot] = env
          if not newest or env.g > newest.g then newest = env end
        else
          state[slot] = "bad"
          first_err = first_err or err
        end
      end
    end
    return state, newest, first_err
  end

  store.get = method(store, function(id)
    check_id(id, "get")
    local _, newest, err = read(id)
    -- a slot that cannot be read fails the read (it may hold the newer record)
    if err then return nil, err end
    if not newest then return nil end
    return check.from_json(newest.r, cjson.null)
  end)

  store.put = method(store, function(id, record)
    check_id(id, "put")
    if record == nil then
      for _, slot in ipairs(SLOTS) do dict:delete(record_key(slot, id)) end
      return true
    end
    local copy = common.copy_record(record, WHO .. ": put")
    local state, newest = read(id)
    -- the slot to write: an empty or unreadable one, else the older one
    local target, other
    for _, slot in ipairs(SLOTS) do
      local s = state[slot]
      if s == nil or s == "bad" then target = slot; break end
      if not target or s.g < state[target].g then target = slot end
    end
    other = target == "a" and "b" or "a"
    local json, jerr = encode_json({ g = (newest and newest.g or 0) + 1, r = copy })
    if not json then raise(WHO .. ": put: the record cannot be stored: " .. jerr) end
    local value = key and envelope.seal(key, SEALED, id, json) or (PLAIN .. json)
    local ok, err = dict:safe_set(record_key(target, id), value)
    if not ok then
      return nil, errors.new("store", ("%s: the record of account %q was not written (%s); "
        .. "the one before it is kept"):format(where, id, tostring(err)))
    end
    -- an unreadable record beside the new one would fail every get
    if state[other] == "bad" then dict:delete(record_key(other, id)) end
    return true
  end)

  store.lock = method(store, function(id, max_wait)
    check_id(id, "lock")
    -- a max_wait given (connkit passes what the request has left) only shortens the wait
    local timeout = lock_timeout
    if type(max_wait) == "number" and max_wait <= lock_timeout then timeout = math.max(0, max_wait) end
    local lkey = lock_key(id)
    local owner = core.hex(core.random(16))
    local deadline = core.now() + timeout
    local wait = 0.001
    while true do
      local ok, err = dict:safe_add(lkey, owner, lock_ttl)
      if ok then break end
      if err ~= "exists" then
        return nil, errors.new("store", ("%s: the lock of account %q cannot be taken (%s)")
          :format(where, id, tostring(err)))
      end
      local left = deadline - core.now()
      if left <= 0 then
        return nil, errors.new("lock_timeout", ("%s: the lock of account %q was held by another "
          .. "caller for longer than %s s"):format(where, id, core.format_number(timeout)))
      end
      pause(math.min(wait, left))
      wait = math.min(wait * 2, MAX_PAUSE)
    end
    local released = false
    return function()
      if released then return true end
      released = true
      -- The dict has no compare-and-delete: get, compare and delete are
      -- three calls. Between the get and the delete (no yield: a few
      -- microseconds) another worker can only take the lock if ours
      -- expired at that instant (held past lock_ttl); its lock would then be
      -- removed. Past lock_ttl the lock is not ours anyway.
      if dict:get(lkey) == owner then dict:delete(lkey) end
      return true
    end
  end)

  --- rate_take(scope_key, per_second, burst, at, limit) -> seconds to wait:
  -- a rate limit's bucket shared by every worker (connkit.store.shared_rate)
  store.rate_take = method(store, shared_rate.taker(dict, where, check_id))

  return setmetatable(store, {
    __tostring = function() return where end,
  })
end

return M
