--- What the built-in stores share: id checks, record copies, and functions
-- callable as store.get(id) or store:get(id).
-- @module connkit.store.common
local core = require "connkit.core"
local errors = require "connkit.errors"
local raise = require("connkit.check").raise

local M = {}

--- Raises (at the store user's level) unless id is a non-empty string.
-- @tparam string store_name the store, for the message
-- @param id the id given
-- @tparam string fname the store function called
-- @raise unless id is a non-empty string
function M.check_id(store_name, id, fname)
  if type(id) ~= "string" or id == "" then
    raise(("%s: %s: id must be a non-empty string, got %s"):format(store_name, fname, type(id)))
  end
end

-- Deep copy of a record made of strings, numbers, booleans and tables;
-- raises naming the field for anything else (functions, userdata, cycles).
local function copy(v, path, seen)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then return v end
  if t ~= "table" then
    error(("connkit.store: record field %s: a %s cannot be stored"):format(path, t), 0)
  end
  if seen[v] then error(("connkit.store: record field %s: cycle"):format(path), 0) end
  seen[v] = true
  local out = {}
  for k, x in pairs(v) do
    local kt = type(k)
    if kt ~= "string" and kt ~= "number" then
      error(("connkit.store: record field %s: keys must be strings or numbers"):format(path), 0)
    end
    out[k] = copy(x, path .. "." .. tostring(k), seen)
  end
  seen[v] = nil
  return out
end

--- A deep copy of a record; raises (at the caller outside connkit) naming the field that cannot be stored.
-- @tparam table record
-- @tparam[opt] string who the function named in the error
-- @treturn table
function M.copy_record(record, who)
  if type(record) ~= "table" then
    raise(("%s: record must be a table, got %s"):format(who or "connkit.store", type(record)))
  end
  local ok, res = pcall(copy, record, "record", {})
  if not ok then raise(res) end
  return res
end

--- Lets a store's functions be called as store.get(id) or store:get(id).
-- @tparam table store the store
-- @tparam function f the function
-- @treturn function f, callable with "." or ":"
function M.method(store, f)
  return function(a, ...)
    if a == store then return f(...) end
    return f(a, ...)
  end
end

--- store.get(id) for the account. These account_* functions are the calls
-- the token rules make on an account's store, in the store protocol's call
-- style (connkit.store): store.get(id), store.put(id, r), store.lock(id).
-- @tparam connkit.account.Account acct the account
-- @treturn[1] table|nil the record, or nil when there is none
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "store" for a store that raised)
function M.account_get(acct)
  local ok, rec, err = pcall(acct.store.get, acct.id)
  if not ok then return nil, errors.new("store", "store.get failed: " .. tostring(rec)) end
  if rec == nil and err then return nil, errors.is(err) and err or errors.new("store", tostring(err)) end
  return rec
end

--- store.put(id, rec) for the account, errors made connkit errors.
-- @tparam connkit.account.Account acct the account
-- @tparam table|nil rec the record (nil removes it)
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "store" for a store that raised)
function M.account_put(acct, rec)
  local ok, res, err = pcall(acct.store.put, acct.id, rec)
  if not ok then return nil, errors.new("store", "store.put failed: " .. tostring(res)) end
  if not res then return nil, errors.is(err) and err or errors.new("store", "store.put failed: " .. tostring(err)) end
  return true
end

--- store.lock(id) for the account: the unlock function, errors made
-- connkit errors.
-- `deadline` (core.now() seconds, optional): the store waits for the lock
-- until then at most (a store may wait less: its lock_timeout).
--
-- The fenced lock (optional, backward compatible): `store.lock(id, max_wait)`
-- may return a second value, a *held lock* table, besides the unlock
-- function. Stores that return only the unlock function (memory, file, a
-- user's own) work as before. A held lock has:
--
--   held.get()          -> record or nil (, err): the record read under the
--                          lock; its version is remembered for put/begin
--   held.put(record)    -> true, or nil and err: the fenced commit, refused
--                          with err.code "lock_lost" when the lock is no
--                          longer this holder's or the record changed since
--                          held.get() (the newer record is kept)
--   held.begin()        -> true, or nil and err ("lock_lost" as above):
--                          optional; marks the record "refresh in flight"
--                          before the token request is sent
--   held.inflight       set by held.get() when a previous holder began a
--                          token request and never committed (it died)
--
-- While the renewal holds the lock, the account keeps the held lock as
-- acct._held, and M.locked_get / M.locked_put / M.locked_begin use it.
-- @tparam connkit.account.Account acct the account
-- @tparam[opt] number deadline when to stop waiting (core.now() seconds)
-- @treturn[1] function the unlock function
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error ("lock_timeout", "lock_busy", "store")
function M.account_lock(acct, deadline)
  local ok, unlock, err
  if deadline then
    ok, unlock, err = pcall(acct.store.lock, acct.id, math.max(0, deadline - core.now()))
  else
    ok, unlock, err = pcall(acct.store.lock, acct.id)
  end
  if not ok then return nil, errors.new("store", "store.lock failed: " .. tostring(unlock)) end
  if type(unlock) ~= "function" then
    return nil, errors.is(err) and err or errors.new("store", "store.lock did not return an unlock function")
  end
  local held = err
  if type(held) == "table" and type(held.get) == "function" and type(held.put) == "function" then
    acct._held = held
    local release = unlock
    unlock = function()
      if acct._held == held then acct._held = nil end
      return release()
    end
  end
  return unlock
end

-- A held lock's call made like the store's: errors become code "store".
local function held_call(f, ...)
  local ok, res, err = pcall(f, ...)
  if not ok then return nil, errors.new("store", "store lock: " .. tostring(res)) end
  if res == nil and err then return nil, errors.is(err) and err or errors.new("store", tostring(err)) end
  return res
end

--- The record under the lock: through the held lock when the store gave
-- one (its version is remembered for the fenced commit), else store.get.
-- @tparam connkit.account.Account acct the account
-- @treturn[1] table|nil the record, or nil when there is none
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.locked_get(acct)
  local held = acct._held
  if not held then return M.account_get(acct) end
  return held_call(held.get)
end

--- Writes the record: the fenced commit when the account holds a fenced
-- lock (nil, err with code "lock_lost" when refused), else store.put.
-- @tparam connkit.account.Account acct the account
-- @tparam table|nil rec the record
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error ("lock_lost", "store")
function M.locked_put(acct, rec)
  local held = acct._held
  if not held then return M.account_put(acct, rec) end
  local ok, err = held_call(held.put, rec)
  if not ok then return nil, err or errors.new("store", "store lock: put failed") end
  return true
end

--- Marks the record "refresh in flight" when the store can (true when it
-- cannot: nothing to mark); nil, err ("lock_lost") when the lock was lost.
-- @tparam connkit.account.Account acct the account
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error ("lock_lost")
function M.locked_begin(acct)
  local held = acct._held
  if not (held and type(held.begin) == "function") then return true end
  local ok, err = held_call(held.begin)
  if not ok then return nil, err or errors.new("store", "store lock: begin failed") end
  return true
end

--- Whether the record read under the lock says a token request of an
-- earlier holder was started and never committed.
-- @tparam connkit.account.Account acct the account
-- @treturn boolean
function M.locked_inflight(acct)
  local held = acct._held
  return held ~= nil and held.inflight and true or false
end

--- The error of a refresh token refused (invalid_grant) after an earlier
-- holder of the store's lock began a token request and never committed:
-- the server rotated the refresh token and the new one died with that
-- holder. Code "reauthorize", err.lost_in_flight = true.
-- @tparam connkit.account.Account acct the account
-- @tparam connkit.errors.Error ferr the refresh's error (invalid_grant)
-- @treturn connkit.errors.Error the error
function M.lost_in_flight(acct, ferr)
  return errors.new("reauthorize", ("account '%s': a token refresh was lost mid-flight (an earlier "
    .. "holder of the store's lock sent its token request and stopped before storing the reply, "
    .. "so the rotated refresh token was never stored); authorize it again"):format(acct.id),
    { status = ferr.status, oauth_error = ferr.oauth_error, lost_in_flight = true })
end

return M
