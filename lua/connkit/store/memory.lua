--- In-process token store (the default): records live in a Lua table owned
-- by the store object and die with the process.
--
-- Records are copied on the way in and on the way out, so a caller that
-- changes a table it got from `get` (or gave to `put`) does not change what
-- is stored; this matches the file store, where a record is serialized.
-- @module connkit.store.memory
local M = {}

local function check_id(id, fname)
  if type(id) ~= "string" or id == "" then
    error(("connkit.store.memory: %s: id must be a non-empty string, got %s")
      :format(fname, type(id)), 3)
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

--- A deep copy of a record; raises (level 3) naming the field that cannot be stored.
-- @tparam table record
-- @treturn table
function M.copy_record(record, who)
  if type(record) ~= "table" then
    error(("%s: record must be a table, got %s"):format(who or "connkit.store", type(record)), 3)
  end
  local ok, res = pcall(copy, record, "record", {})
  if not ok then error(res, 3) end
  return res
end

-- Lets a store's functions be called as store.get(id) or store:get(id).
local function method(store, f)
  return function(a, ...)
    if a == store then return f(...) end
    return f(a, ...)
  end
end

--- A new, empty in-process store.
-- `get(id)` -> record or nil; `put(id, record)` -> true (a nil record
-- removes the entry); `lock(id)` -> unlock function. The lock is a no-op:
-- inside one process the account's own single-flight serializes refreshes.
-- Every function may be called with `.` or `:`.
-- @treturn table the store
function M.new()
  local records = {}
  local store = {}
  store.get = method(store, function(id)
    check_id(id, "get")
    local r = records[id]
    if r == nil then return nil end
    return copy(r, "record", {})
  end)
  store.put = method(store, function(id, record)
    check_id(id, "put")
    if record == nil then
      records[id] = nil
    else
      records[id] = M.copy_record(record, "connkit.store.memory: put")
    end
    return true
  end)
  store.lock = method(store, function(id)
    check_id(id, "lock")
    return function() return true end
  end)
  return setmetatable(store, {
    __tostring = function() return "connkit.store.memory" end,
  })
end

return M
