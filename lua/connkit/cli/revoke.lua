--- The connkit revoke command: revokes the tokens at the server.
-- `connkit revoke DEF --account ID` revokes them (RFC 7009, where the definition has a revoke_url) and drops them from
-- the store either way.
-- @module connkit.cli.revoke
local context = require "connkit.cli.context"
local fail = require "connkit.cli.fail"

local M = {}

--- Runs the command.
-- @tparam table a the parsed arguments (connkit.cli.args)
-- @treturn integer the exit status
function M.run(a)
  local c = context.account(a)
  if not c.account.revoke then fail.usage(('auth = "%s" has no tokens to revoke'):format(c.integration.auth)) end
  local ok, err = c.account:revoke()
  if not ok then fail.error(err, "account " .. c.id) end
  io.stderr:write("connkit: account ", c.id, ": tokens revoked and removed from the store\n")
  return 0
end

return M
