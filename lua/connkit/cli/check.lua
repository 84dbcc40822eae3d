--- `connkit check DEF`: loads and checks a definition; a mistake is one
-- line naming the field (exit status 1).
-- @module connkit.cli.check
local context = require "connkit.cli.context"

local M = {}

--- Runs the command.
-- @tparam table a the parsed arguments (connkit.cli.args)
-- @treturn integer the exit status
function M.run(a)
  local integ = context.definition(a.def)
  io.stdout:write(("%s: ok (%s, key %s, auth %s)\n"):format(a.def, integ.name, integ.key, integ.auth))
  return 0
end

return M
