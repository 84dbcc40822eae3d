--- The connkit token command: a valid access token on stdout and nothing
-- else. `connkit token DEF --account ID` prints it, fetched or refreshed as needed (for `$(connkit token ...)`).
-- @module connkit.cli.token
local context = require "connkit.cli.context"
local fail = require "connkit.cli.fail"

local M = {}

--- Runs the command.
-- @tparam table a the parsed arguments (connkit.cli.args)
-- @treturn integer the exit status
function M.run(a)
  local c = context.account(a)
  local token, err = c.account:token()
  if not token then fail.error(err, "account " .. c.id) end
  io.stdout:write(token, "\n")
  return 0
end

return M
