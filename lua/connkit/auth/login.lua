--- Interactive OAuth 2.0 logins: the RFC 8252 loopback redirect
-- (account:login) and the RFC 8628 device authorization grant
-- (account:login_device).
-- @module connkit.auth.login
local core = require "connkit.core"
local errors = require "connkit.errors"
local check = require "connkit.check"
local endpoint = require "connkit.auth.token_endpoint"
local tokens = require "connkit.auth.tokens"
local oauth2 = require "connkit.auth.oauth2"
local discovery = require "connkit.auth.discovery"

local Account = require("connkit.account").Account

local M = {}

local function page(text)
  return ("<!doctype html><html><head><meta charset=utf-8><title>connkit</title></head>"
    .. "<body><p>%s</p></body></html>"):format(text)
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local LOGIN_OPTS = {
  port = "port", timeout = "timeout", open = "boolean", path = "string", scope = "string",
  on_url = "callable", params = "query",
}

--- Authorization code login through a loopback redirect (RFC 8252):
-- listens on 127.0.0.1 only (an ephemeral port with port = 0), shows the
-- URL (on_url(url), else printed; a browser is opened only with open =
-- true), takes exactly one callback with the right state, answers the
-- browser with a short page and closes the socket.
-- @tparam[opt] table opts
--
--  * `port` (integer, default 0: any free port): the port to listen on
--  * `path` (string, default "/callback"): the redirect URI's path
--  * `timeout` (seconds, default 120): how long to wait for the callback
--  * `open` (boolean): open the URL with xdg-open
--  * `on_url` (function(url)): shows the URL (else it is printed)
--  * `scope` (string), `params` (table): as for authorize_url
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "timeout" when nobody came
--   back, else as for finish_authorization)
-- @raise for a bad option
function Account:login(opts)
  opts = check.options("login", opts, LOGIN_OPTS)
  local port = opts.port or 0
  local timeout = opts.timeout or 120
  local path = opts.path or "/callback"
  if not path:find("^/[%w%-%._~/]*$") then
    check.raise("login: option 'path' must be a URL path made of letters, digits and -._~/")
  end
  local l, code, msg = core.listen(port)
  if not l then return nil, errors.new(code, msg) end
  local redirect_uri = ("http://127.0.0.1:%d%s"):format(l.port, path)
  local url, uerr = self:authorize_url { redirect_uri = redirect_uri, scope = opts.scope, params = opts.params }
  if not url then
    l:close()
    return nil, uerr
  end
  if opts.on_url then
    opts.on_url(url)
  else
    io.stdout:write("Open this URL in a browser to authorize ", tostring(self.id), ":\n", url, "\n")
    io.stdout:flush()
  end
  if opts.open then os.execute("xdg-open " .. shell_quote(url) .. " >/dev/null 2>&1 &") end
  local deadline = core.now() + timeout
  while true do
    local left = deadline - core.now()
    local target, acode, amsg
    if left > 0 then target, acode, amsg = l:accept(left) else acode = "timeout" end
    if not target then
      l:close()
      if acode == "timeout" then
        return nil, errors.new("timeout", ("no authorization came back to %s within %g s"):format(redirect_uri, timeout))
      end
      return nil, errors.new(acode, amsg)
    end
    local got_path = target:match("^[^?#]*")
    local query = target:match("%?([^#]*)") or ""
    local p = endpoint.parse_form(query)
    if got_path ~= path then
      l:reply(404, page("Not found."))
    elseif not (p.state and self._pending and self._pending[p.state]) then
      l:reply(400, page("This is not the authorization response connkit is waiting for."))
    else
      local ok, err = self:finish_authorization(query)
      l:reply(ok and 200 or 400, page(ok and "Authorized. You can close this window."
        or ("Authorization failed (" .. err.code .. "). You can close this window.")))
      l:close()
      return ok, err
    end
  end
end

local DEVICE_OPTS = { on_code = "callable", scope = "string", timeout = "timeout" }
local DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

--- Device authorization grant (RFC 8628): asks for a code, shows it
-- (on_code(verification_uri, user_code, info), else printed), then polls
-- the token endpoint at `interval` (default 5 s; 5 s more on slow_down)
-- until the user approves, denies (access_denied) or the code expires
-- (expired_token).
-- @tparam[opt] table opts
--
--  * `on_code` (function(verification_uri, user_code, info)): shows the code
--    (info: verification_uri_complete, expires_in, interval)
--  * `scope` (string): over the definition's oauth2.scope
--  * `timeout` (seconds): gives up sooner than the code expires
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error: "access_denied", "expired_token",
--   or the endpoint's
-- @raise when the account has no device_authorization_url (nor issuer), or
--   for a bad option
function Account:login_device(opts)
  opts = check.options("login_device", opts, DEVICE_OPTS)
  local o = self.integration.oauth2
  if self.integration.auth ~= "oauth2" or not (o.device_authorization_url or o.discovery) then
    check.raise(("account '%s': login_device needs oauth2.device_authorization_url or oauth2.issuer"):format(tostring(self.id)))
  end
  local url, uerr = discovery.url(self, "device_authorization_url")
  if not url then return nil, uerr end
  local params, headers = oauth2.base_params(self), {}
  local scope = opts.scope or (o.scope and assert(self:fill(o.scope)))
  if scope and scope ~= "" then params.scope = scope end
  local ok, err = endpoint.authenticate(self, params, headers)
  if not ok then return nil, err end
  local f, ferr = endpoint.call(self, url, "POST", params, headers, "device authorization endpoint")
  if not f then return nil, ferr end
  local uri = f.verification_uri or f.verification_url
  if type(f.device_code) ~= "string" or type(f.user_code) ~= "string" or type(uri) ~= "string" then
    return nil, errors.new("token_endpoint", "the device authorization reply lacks device_code, user_code or verification_uri")
  end
  self:_add_secret(f.device_code)
  local interval = endpoint.number_of(f.interval) or 5
  local expires = endpoint.number_of(f.expires_in) or 1800
  if opts.timeout then expires = math.min(expires, opts.timeout) end
  local info = { verification_uri_complete = f.verification_uri_complete, expires_in = expires, interval = interval }
  if opts.on_code then
    opts.on_code(uri, f.user_code, info)
  else
    io.stdout:write(("To authorize %s, open %s and enter the code %s\n"):format(tostring(self.id), uri, f.user_code))
    io.stdout:flush()
  end
  local deadline = core.now() + expires
  while true do
    if core.now() + interval > deadline then
      return nil, errors.new("expired_token", "the device code expired before it was approved")
    end
    core.sleep(interval)
    local p = oauth2.base_params(self)
    p.grant_type, p.device_code = DEVICE_GRANT, f.device_code
    local rec, perr = oauth2.token_call(self, p, "token endpoint (device_code)")
    if rec then return tokens.install(self, tokens.merge(self, rec)) end
    if perr.code == "slow_down" then
      interval = interval + 5
    elseif perr.code ~= "authorization_pending" then
      return nil, perr
    end
  end
end

return M
