--- What the built-in stores share: id checks, record copies, and functions
-- callable as store.get(id) or store:get(id).
-- @module connkit.store.common
local core = require "connkit.core"
local errors = require "connkit.errors"
local raise = require("connkit.check").raise

local M = {}

--- Raises (at the store user's level) unless id is a non-empty string.
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
function M.method(store, f)
  return function(a, ...)
    if a == store then return f(...) end
    return f(a, ...)
  end
end

--- The calls the token rules make on an account's store, in the call style of API.md: store.get(id), store.put(id, r), store.lock(id).
function M.account_get(acct)
  local ok, rec, err = pcall(acct.store.get, acct.id)
  if not ok then return nil, errors.new("store", "store.get failed: " .. tostring(rec)) end
  if rec == nil and err then return nil, errors.is(err) and err or errors.new("store", tostring(err)) end
  return rec
end

function M.account_put(acct, rec)
  local ok, res, err = pcall(acct.store.put, acct.id, rec)
  if not ok then return nil, errors.new("store", "store.put failed: " .. tostring(res)) end
  if not res then return nil, errors.is(err) and err or errors.new("store", "store.put failed: " .. tostring(err)) end
  return true
end

-- `deadline` (core.now() seconds, optional): the store waits for the lock
-- until then at most (a store may wait less: its lock_timeout)
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
  return unlock
end

return M
