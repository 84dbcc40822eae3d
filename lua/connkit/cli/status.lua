--- The connkit status command: what the account's record says.
-- `connkit status DEF --account ID` prints one `name: value` line each,
-- sorted (account:status(), which holds no secret).
-- @module connkit.cli.status
local context = require "connkit.cli.context"

local M = {}

local function show(v)
  if type(v) == "table" then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = tostring(k) .. "=" .. tostring(x) end
    table.sort(parts)
    return table.concat(parts, " ")
  end
  return tostring(v)
end

--- Runs the command.
-- @tparam table a the parsed arguments (connkit.cli.args)
-- @treturn integer the exit status
function M.run(a)
  local c = context.account(a)
  local st = c.account:status()
  local lines = { "account: " .. c.id }
  for k, v in pairs(st) do lines[#lines + 1] = k .. ": " .. show(v) end
  table.sort(lines, function(x, y)
    if x:find("^account:") then return not y:find("^account:") end
    if y:find("^account:") then return false end
    return x < y
  end)
  io.stdout:write(table.concat(lines, "\n"), "\n")
  return 0
end

return M
