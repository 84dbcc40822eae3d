--- The stores the crash loop (spec/support/crash_loop.lua) can hammer, by
-- name. Each entry opens the store from a plain config table (it travels to
-- the writer process as JSON) and is used by both sides: the writer that is
-- killed, and the checker that reopens the store after every kill. A store
-- that comes later (shared dict, Redis) adds an entry here.
local connkit = require "connkit"

local M = {}

--- connkit.store.file on config.dir with config.key (base64).
function M.file(config)
  return connkit.store.file(config.dir, { key = config.key })
end

--- Opens the store named `name` with `config`; raises for an unknown name.
function M.open(name, config)
  local open = M[name]
  if type(open) ~= "function" or name == "open" then
    error("crash_stores: no store named " .. tostring(name), 2)
  end
  return open(config)
end

return M
