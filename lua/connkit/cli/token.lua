--- `connkit token DEF --account ID`: a valid access token on stdout and
-- nothing else, fetched or refreshed as needed (for `$(connkit token ...)`).
-- @module connkit.cli.token
local context = require "connkit.cli.context"
local fail = require "connkit.cli.fail"

local M = {}

function M.run(a)
  local c = context.account(a)
  local token, err = c.account:token()
  if not token then fail.error(err, "account " .. c.id) end
  io.stdout:write(token, "\n")
  return 0
end

return M
