--- What the built-in stores share: id checks, record copies, and functions
-- callable as store.get(id) or store:get(id).
-- @module connkit.store.common
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

return M
