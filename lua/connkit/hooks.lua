--- Hooks and health: `on_request(info)` / `on_response(info)` around every
-- transfer an account makes (API requests, each attempt, and the calls to
-- its token endpoint), `on_refresh_error(account, err)` after each failed
-- token renewal, and the `state`, `last_error` and `refreshed_at` fields of
-- account:status().
--
-- What a hook sees never holds a secret: the URL keeps its query parameter
-- names but not their values (and goes through the account's redaction),
-- headers are names only, a failure is its code only. A hook that raises
-- does not change the request: the error (redacted) is written to stderr
-- (inside nginx: the error log, level WARN) and the request goes on.
-- @module connkit.hooks
local core = require "connkit.core"
local check = require "connkit.check"

local now = core.now

local M = {}

--- What on_request(info) and on_response(info) get (a fresh copy each call,
-- never a secret).
-- @table info
-- @field kind "api", or "auth" for a token, device or revocation endpoint
-- @field account the account's id
-- @field integration the integration's key
-- @field method the HTTP method
-- @field url the URL, query values left out (names kept)
-- @field headers the header names sent (no values)
-- @field attempt the attempt number (1 first)
-- @field transport "curl" or "ngx"
-- @field redirect the number of a redirect hop (nil for an attempt's first
--   transfer)
-- @field elapsed on_response: seconds the transfer took
-- @field status on_response: the reply's status, when there is a reply
-- @field error on_response: the error code, when there is none

--- The hooks an integration or an account may set.
M.NAMES = { "on_request", "on_response", "on_refresh_error" }

--- Checks the hook fields of a definition or of account options (each must
-- be callable; raises naming the field) and returns them as a table.
-- @tparam table ctx the check context (connkit.check.context)
-- @tparam table t the definition or the account options
-- @treturn table `{ on_request =, on_response =, on_refresh_error = }`
function M.check(ctx, t)
  local out = {}
  for _, name in ipairs(M.NAMES) do
    out[name] = check.field(ctx, name, t[name], "callable")
  end
  return out
end

--- Gives the account its hooks: the integration's, then its own (both are
-- called, the integration's first). `acct._hooks` is nil when there are no
-- request hooks, so a request of such an account costs nothing more.
-- @tparam connkit.account.Account acct the account
-- @tparam table own the account's own hooks (from M.check)
function M.setup(acct, own)
  local integ_hooks = acct.integration.hooks or {}
  local set, any = {}, false
  for _, name in ipairs(M.NAMES) do
    local list = {}
    if integ_hooks[name] then list[#list + 1] = integ_hooks[name] end
    if own[name] then list[#list + 1] = own[name] end
    if #list > 0 then
      set[name] = list
      if name ~= "on_refresh_error" then any = true end
    end
  end
  acct._hooks = any and set or nil
  acct._refresh_hooks = set.on_refresh_error
end

-- Where a hook's error goes: stderr, or nginx's error log inside nginx.
local function write_line(line)
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.log) == "function" and type(ngx.get_phase) == "function" then
    ngx.log(ngx.WARN, line)
  else
    io.stderr:write(line, "\n")
  end
end
M.write_line = write_line

-- Calls every function of `list` with the arguments; a Lua error is
-- reported (without the account's secrets) and does not stop the others.
-- An interrupt (Ctrl-C) is raised again.
local function call_all(acct, name, list, a, b)
  for i = 1, #list do
    local ok, err = pcall(list[i], a, b)
    if not ok then
      local msg = tostring(err)
      if msg:find("interrupted!", 1, true) then error(err, 0) end
      M.write_line(("connkit: the %s hook of account '%s' raised an error (the request went on): %s")
        :format(name, tostring(acct.id), acct:_redact(msg)))
    end
  end
end

-- The URL for a hook: no user info, no fragment, query names without
-- their values, and none of the account's secrets.
local function shown_url(acct, url)
  local base, query = url:match("^([^?#]*)%??([^#]*)")
  base = base:gsub("^(%a[%w+.-]*://)[^/@]*@", "%1")
  if query ~= "" then
    local names = {}
    for pair in query:gmatch("[^&]+") do names[#names + 1] = pair:match("^[^=]*") end
    base = base .. "?" .. table.concat(names, "&")
  end
  return acct:_redact(base)
end
M.shown_url = shown_url

-- The names of the headers sent ("Name:" with no value is a header left
-- out, not sent).
local function header_names(acct, lines)
  local names = {}
  for _, l in ipairs(lines or {}) do
    local name, sep, rest = l:match("^([^:;]+)([:;])(.*)$")
    if name and not (sep == ":" and rest:find("^%s*$")) then names[#names + 1] = acct:_redact(name) end
  end
  return names
end

-- A copy of an info table (each hook call gets its own: a hook may keep it).
local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  local names = {}
  for i, n in ipairs(t.headers) do names[i] = n end
  c.headers = names
  return c
end

--- A transfer of `acct` starts: calls on_request, returns what M.finish
-- needs (nil when the account has no request hooks). `spec` has method,
-- url and header_lines; `kind` is "api" or "auth" (a token, device or
-- revocation endpoint); `n` the attempt number; `tname` the transport;
-- `hop` the number of a redirect hop (nil for the attempt's first transfer).
-- @tparam connkit.account.Account acct the account
-- @tparam table spec the transfer: method, url, header_lines
-- @tparam string kind "api" or "auth"
-- @tparam[opt=1] integer n the attempt number
-- @tparam string tname the transport's name
-- @tparam[opt] integer hop the redirect hop
-- @treturn table|nil the call, for M.finish
function M.begin(acct, spec, kind, n, tname, hop)
  local h = acct._hooks
  if not h then return nil end
  local info = {
    kind = kind, account = acct.id, integration = acct.integration.key,
    method = spec.method, url = shown_url(acct, spec.url), headers = header_names(acct, spec.header_lines),
    attempt = n or 1, transport = tname, redirect = hop,
  }
  local call = { acct = acct, info = info, t0 = now() }
  if h.on_request then call_all(acct, "on_request", h.on_request, copy(info)) end
  return call
end

--- The transfer begun with M.begin is over: calls on_response with the
-- status (a reply) or the error code (no reply), and the seconds it took.
-- @tparam table|nil call what M.begin returned (nil: nothing to do)
-- @param res the reply, or nil
-- @param err the error, when there is no reply
function M.finish(call, res, err)
  if not call then return end
  local acct = call.acct
  local h = acct._hooks
  if not (h and h.on_response) then return end
  local info = copy(call.info)
  info.elapsed = now() - call.t0
  if res then
    info.status = res.status
  else
    info.error = type(err) == "table" and err.code or tostring(err)
  end
  call_all(acct, "on_response", h.on_response, info)
end

---------------------------------------------------------------------------
-- Health: account:status().state, last_error, refreshed_at
---------------------------------------------------------------------------

local function keep_error(acct, err)
  local e = { code = err.code, message = acct:_redact(err.message), at = now() }
  acct._last_error = e
  return e
end

--- A token renewal failed (called once per renewal, not for callers that
-- share it or for a failure remembered within refresh.cooldown): remembers
-- it and calls on_refresh_error(account, err) (err is a copy).
-- @tparam connkit.account.Account acct the account
-- @tparam connkit.errors.Error err the renewal's error
function M.refresh_failed(acct, err)
  keep_error(acct, err)
  local list = acct._refresh_hooks
  if list then
    local errors = require "connkit.errors"
    call_all(acct, "on_refresh_error", list, acct,
      errors.is(err) and errors.new(err.code, err.message, err) or err)
  end
end

--- The outcome of a request of a token account (all its attempts): a
-- failure without a reply or a reply refused for its token (a status in
-- refresh.on_status, after the refresh and retry) makes the account
-- "failing" until a request gets a reply that is not refused. A request
-- sent without the account's credentials (another origin) does not count,
-- nor a cancelled one.
-- @tparam connkit.account.Account acct the account
-- @tparam connkit.http.request.Request req the request
-- @param res the response, or nil
-- @param err the error, when there is no response
function M.request_done(acct, req, res, err)
  if not acct._ensure_token or rawget(req, "_bare") then return end
  if res then
    if acct.integration.refresh.on_status[res.status] then
      acct._request_err = keep_error(acct, { code = "auth",
        message = ("%s %s answered %d after a token refresh"):format(req.method,
          require("connkit.http.url").safe_url(req.url), res.status) })
    else
      acct._request_err = nil
    end
  elseif err and err.code ~= "cancelled" then
    acct._request_err = keep_error(acct, err)
  end
end

--- The outcome of account:verify(): a failure makes any account "failing"
-- until a verify or (token accounts) a request succeeds.
-- @tparam connkit.account.Account acct the account
-- @param err the error, or nil when verify succeeded
function M.verified(acct, err)
  if err then
    acct._request_err = keep_error(acct, err)
  else
    acct._request_err = nil
  end
end

-- An account that gets a token from its credentials alone.
local function refetchable(acct)
  local o = acct.integration.oauth2
  local auth = acct.integration.auth
  return auth == "custom_token" or auth == "jwt"
    or (o ~= nil and (o.grant_type == "client_credentials" or o.grant_type == "jwt_bearer"))
end

--- Adds state, last_error and refreshed_at to a status table.
-- @tparam connkit.account.Account acct the account
-- @tparam table st the status table (account:status)
-- @treturn table st, with `state` ("ok" | "expiring" | "failing" |
--   "reauthorize"), `last_error` (`{ code, message, at }`) and `refreshed_at`
function M.health(acct, st)
  local state = "ok"
  local rec = acct._tok or {}
  local t = now()
  local fail = acct._fail_err
  if acct._ensure_token then
    local usable = rec.access_token ~= nil and (rec.expires_at == nil or t < rec.expires_at - 1)
    if (fail and fail.code == "reauthorize")
        or (not refetchable(acct) and not usable and rec.refresh_token == nil) then
      state = "reauthorize"
    elseif fail or acct._store_err or acct._request_err then
      state = "failing"
    elseif rec.access_token ~= nil and acct._refresh_at ~= nil and t >= acct._refresh_at then
      state = "expiring"
    end
    st.refreshed_at = rec.access_token and rec.issued_at or nil
  elseif acct._request_err then
    state = "failing"
  end
  st.state = state
  local e = acct._last_error
  if e then st.last_error = { code = e.code, message = e.message, at = e.at } end
  return st
end

return M
