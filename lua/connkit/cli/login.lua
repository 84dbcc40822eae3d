--- The connkit login command: authorizes an OAuth 2.0 account and keeps
-- its tokens in the store (`connkit login DEF --account ID`). The authorization code flow goes through
-- a loopback redirect (RFC 8252): the URL is printed on stderr, and opened
-- in a browser only with --browser ($BROWSER, else xdg-open); --device
-- uses the device flow (RFC 8628). Accounts that get tokens from their
-- credentials alone (client credentials, custom token) fetch one, which
-- checks the credentials.
-- @module connkit.cli.login
local context = require "connkit.cli.context"
local fail = require "connkit.cli.fail"

local M = {}

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function number(opt, v, min, max)
  if v == nil then return nil end
  local n = tonumber(v)
  if not n or n < min or n > max then fail.usage(("%s must be a number from %d to %d"):format(opt, min, max)) end
  return n
end

-- Opens `url` in the user's browser, in the background.
local function open_browser(url)
  local browser = os.getenv("BROWSER")
  if not browser or browser == "" then browser = "xdg-open" end
  os.execute(browser .. " " .. quote(url) .. " >/dev/null 2>&1 &")
end

local function done(c)
  local st = c.account:status()
  io.stderr:write("connkit: account ", c.id, " is authorized",
    st.expires_in and (" (token valid for " .. math.floor(st.expires_in) .. " s)") or "", "\n")
  return 0
end

--- Runs the command.
-- @tparam table a the parsed arguments (connkit.cli.args)
-- @treturn integer the exit status
function M.run(a)
  local c = context.account(a)
  local integ, acct = c.integration, c.account
  local o = integ.oauth2
  local timeout = number("--timeout", a.timeout, 1, 86400)
  if integ.auth == "custom_token" or (integ.auth == "oauth2" and o.grant_type ~= "authorization_code") then
    if a.device then fail.usage("--device: the definition's grant needs no user (it is " .. tostring(o and o.grant_type or integ.auth) .. ")") end
    local ok, err = acct:refresh()
    if not ok then fail.error(err, "account " .. c.id) end
    return done(c)
  end
  if integ.auth ~= "oauth2" then
    fail.usage(('login: auth = "%s" needs no login (its credentials go with every request)'):format(integ.auth))
  end
  local ok, err
  if a.device then
    if not o.device_authorization_url then
      fail.usage("--device: the definition has no oauth2.device_authorization_url")
    end
    ok, err = fail.guard(acct.login_device, acct, { scope = a.scope, timeout = timeout,
      on_code = function(uri, code, info)
        io.stderr:write("To authorize ", c.id, ", open ", uri, " and enter the code ", code, "\n")
        if info.verification_uri_complete then
          io.stderr:write("(or open ", info.verification_uri_complete, ")\n")
        end
        io.stderr:flush()
      end })
  else
    ok, err = fail.guard(acct.login, acct, { port = number("--port", a.port, 0, 65535), timeout = timeout,
      scope = a.scope, on_url = function(url)
        io.stderr:write("Open this URL in a browser to authorize ", c.id, ":\n", url, "\n")
        io.stderr:flush()
        if a.browser then open_browser(url) end
      end })
  end
  if not ok then fail.error(err, "login") end
  return done(c)
end

return M
