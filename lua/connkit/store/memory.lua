--- In-process token store (the default): records live in a Lua table owned
-- by the store object and die with the process.
--
-- Records are copied on the way in and on the way out, so a caller that
-- changes a table it got from `get` (or gave to `put`) does not change what
-- is stored; this matches the file store, where a record is serialized.
-- @module connkit.store.memory
local common = require "connkit.store.common"

local M = {}
local method = common.method
local function check_id(id, fname) common.check_id("connkit.store.memory", id, fname) end

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
    return common.copy_record(r, "connkit.store.memory: get")
  end)
  store.put = method(store, function(id, record)
    check_id(id, "put")
    if record == nil then
      records[id] = nil
    else
      records[id] = common.copy_record(record, "connkit.store.memory: put")
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
