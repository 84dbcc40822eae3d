--- How the connkit command stops: a failure is raised as a table with the
-- exit status and a one-line message, and caught in connkit.cli.main,
-- which prints "connkit: <message>" on stderr. Messages never hold a
-- secret: they name the option, variable or file, never a value.
-- @module connkit.cli.fail
local codes = require "connkit.cli.status_codes"
local errors = require "connkit.errors"

local M = {}
local Failure = {}

--- Stops with `status` and `message`.
-- @tparam integer status the exit status
-- @tparam[opt] string message the line for stderr
-- @raise always (a failure that connkit.cli.main turns into the status)
function M.exit(status, message)
  error(setmetatable({ status = status, message = message }, Failure), 0)
end

--- Stops with exit status 1 (a usage mistake) and `message`.
-- @tparam string message the line for stderr
-- @raise always
function M.usage(message) M.exit(codes.USAGE, message) end

--- Stops on a connkit error (err.code picks the status), `what` first.
-- @param err the connkit error
-- @tparam[opt] string what what failed, put first
-- @raise always
function M.error(err, what)
  local msg = errors.clean(tostring(err and err.message or err))
  M.exit(codes.for_error(err), what and (what .. ": " .. msg) or msg)
end

--- True when v was raised by this module.
-- @param v a value raised
-- @treturn boolean
function M.is(v) return getmetatable(v) == Failure end

--- A message raised by connkit for a programming error (a bad definition
-- or option), without the position it carries.
-- @param msg the message
-- @treturn string the message without "file:line:"
function M.clean(msg)
  msg = errors.clean(tostring(msg))
  return (msg:gsub("^[^%s:]+%.lua:%d+:%s*", ""):gsub("\n.*$", ""))
end

--- Calls fn(...); a Lua error raised there (connkit refusing a definition,
-- an account or an option) stops with status 1 and its message.
-- @tparam function fn the function
-- @param ... its arguments
-- @return fn's results
-- @raise a failure (status 1) for a Lua error in fn
function M.guard(fn, ...)
  local res = { pcall(fn, ...) }
  if res[1] then return (table.unpack or unpack)(res, 2, table.maxn and table.maxn(res) or #res) end
  if M.is(res[2]) then error(res[2], 0) end
  if type(res[2]) == "string" and res[2]:find("interrupted!", 1, true) then error(res[2], 0) end
  M.usage(M.clean(res[2]))
end

return M
