--- The connkit command (bin/connkit): parses the arguments, runs the
-- command, and turns every way it can end into an exit status and at most
-- one line on stderr. User mistakes and connkit errors never show a Lua
-- traceback; a bug in the command itself does (exit status 70), so it can
-- be reported.
-- @module connkit.cli
local args = require "connkit.cli.args"
local fail = require "connkit.cli.fail"
local codes = require "connkit.cli.status_codes"

local M = {}

local function say(msg)
  io.stderr:write("connkit: ", (tostring(msg):gsub("[\r\n]+", " ")), "\n")
  io.stderr:flush()
end

--- Runs the command line `argv` (a list of strings, as `arg`); returns the
-- exit status.
-- @tparam {string,...} argv the arguments after the program name
-- @treturn integer the exit status: 0, 22 for a non-2xx reply, 1 for usage
--   and definition errors, other codes for connkit errors
--   (connkit.cli.status_codes), 70 for a bug in the command
function M.main(argv)
  local list = {}
  for i = 1, #(argv or {}) do list[i] = argv[i] end
  local parser = args.parser()
  local ok, a = parser:pparse(list)
  if not ok then
    local known = { check = 1, login = 1, token = 1, status = 1, revoke = 1, request = 1, sftp = 1 }
    local cmd = known[list[1]] and (" " .. list[1]) or ""
    say(a .. " (see connkit" .. cmd .. " --help)")
    return codes.USAGE
  end
  local cmd = a.command
  local status
  local done, err = xpcall(function()
    status = require("connkit.cli." .. cmd).run(a)
  end, function(e)
    if fail.is(e) or (type(e) == "string" and e:find("interrupted!", 1, true)) then return e end
    return { internal = true, message = tostring(e), trace = debug.traceback("", 2) }
  end)
  io.stdout:flush()
  if done then return status or codes.OK end
  if fail.is(err) then
    say(err.message)
    return err.status
  end
  if type(err) == "string" then
    say("interrupted")
    return codes.INTERRUPTED
  end
  say("internal error (a bug in connkit, please report it): " .. err.message)
  io.stderr:write(err.trace, "\n")
  return codes.INTERNAL
end

return M
