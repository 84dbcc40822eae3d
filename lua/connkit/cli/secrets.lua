--- Values of credentials and secret parameters for the connkit command:
-- `name=@env:VAR`, `name=@file:PATH`, or `name` alone (asked on the
-- terminal without echo). A plain value is refused for anything secret:
-- it would show in `ps`, /proc and the shell's history.
-- @module connkit.cli.secrets
local fail = require "connkit.cli.fail"

local M = {}

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

--- True when stdin and /dev/tty are a terminal to ask on.
-- @treturn boolean
function M.have_terminal()
  local r = os.execute("test -t 0 && test -r /dev/tty")
  return r == true or r == 0 -- (5.1 and LuaJIT give the status number)
end

-- Reads one line from the terminal without echo. The shell restores the
-- terminal's settings on every way out (Enter, Ctrl-C, SIGTERM, hang-up);
-- the value comes back over a pipe, never as an argument.
local ASK = [[
saved=$(stty -g </dev/tty) || exit 1
trap 'stty "$saved" </dev/tty; printf "\n" >/dev/tty; exit 130' INT TERM HUP
printf '%s' "$1" >/dev/tty
stty -echo </dev/tty
IFS= read -r line </dev/tty; rc=$?
stty "$saved" </dev/tty
printf '\n' >/dev/tty
[ $rc -eq 0 ] || exit 1
printf '%s' "$line"
]]

--- Asks for `label` on the terminal, without echo unless `echo`.
-- @tparam string label what is asked for
-- @tparam[opt] boolean echo show what is typed
-- @treturn string the answer
function M.ask(label, echo)
  if not M.have_terminal() then
    fail.usage(label .. ": no value given and no terminal to ask on (give it as @env:VAR or @file:PATH)")
  end
  local script = echo and ASK:gsub("stty %-echo </dev/tty\n", "") or ASK
  local p = assert(io.popen("sh -c " .. quote(script) .. " connkit " .. quote(label .. ": ")))
  local v = p:read("*a")
  p:close()
  if v == nil or v == "" then fail.usage(label .. ": nothing was entered") end
  return v
end

--- The value of `spec` ("@env:VAR" or "@file:PATH") for the option `what`,
-- or nil when spec is not such a reference.
-- @tparam string what the option, for the message
-- @tparam string spec the value given
-- @treturn string|nil the value referred to, or nil
function M.reference(what, spec)
  local var = spec:match("^@env:(.*)$")
  if var then
    if var == "" then fail.usage(what .. ": @env: needs a variable name") end
    local v = os.getenv(var)
    if v == nil or v == "" then fail.usage(what .. ": the environment variable " .. var .. " is not set") end
    return v
  end
  local path = spec:match("^@file:(.*)$")
  if path then
    local f, err = io.open(path, "rb")
    if not f then fail.usage(what .. ": cannot read " .. path .. " (" .. tostring(err):gsub("^[^:]*: ", "") .. ")") end
    local v = f:read("*a")
    f:close()
    v = v:gsub("\r?\n$", "")
    if v == "" then fail.usage(what .. ": " .. path .. " is empty") end
    return v
  end
  return nil
end

--- Resolves `name=value` arguments of option `opt` into a table.
-- is_public(name) says whether a plain value may be given for name.
-- A bare name is asked on the terminal (with echo when public).
-- @tparam string opt the option's name ("--credential")
-- @tparam {string,...} list the arguments
-- @tparam function is_public is_public(name) -> boolean
-- @treturn table name -> value
function M.resolve(opt, list, is_public)
  local out = {}
  for _, item in ipairs(list or {}) do
    local name, value = item:match("^([^=]+)=(.*)$")
    if not name then name = item end
    if not name:find("^[%w_%-%.]+$") then
      fail.usage(opt .. ": '" .. name .. "' is not a name (expected name=@env:VAR, name=@file:PATH or name)")
    end
    local what = opt .. " " .. name
    if value == nil then
      out[name] = M.ask(name, is_public(name))
    else
      local v = M.reference(what, value)
      if v == nil then
        if not is_public(name) then
          fail.usage(what .. ": a secret is never taken from the command line (it would show in ps and"
            .. " the shell's history); give " .. name .. "=@env:VAR, " .. name .. "=@file:PATH or " .. name
            .. " alone to be asked")
        end
        if value == "" then fail.usage(what .. ": the value is empty") end
        v = value
      end
      out[name] = v
    end
  end
  return out
end

return M
