--- Calls to token-issuing endpoints (OAuth 2.0 token, device authorization
-- and revocation endpoints, custom login URLs) and the parsing of their
-- replies: JSON or form-encoded, `expires_in` as number or string,
-- `expires_at`, an `error` in a 200, HTML or empty bodies.
-- @module connkit.auth.token_endpoint
local core = require "connkit.core"
local cosync = require "connkit.cosync"
local transport = require "connkit.transport"
local errors = require "connkit.errors"
local request = require "connkit.http.request"
local urls = require "connkit.http.url"
local cjson = require "cjson.safe"

local M = {}

-- RFC 6749 5.2, RFC 8628 3.5, RFC 7009 2.2.1: kept as err.code
local OAUTH_ERRORS = {
  invalid_request = true, invalid_client = true, invalid_grant = true,
  unauthorized_client = true, unsupported_grant_type = true, invalid_scope = true,
  access_denied = true, authorization_pending = true, slow_down = true,
  expired_token = true, server_error = true, temporarily_unavailable = true,
  unsupported_token_type = true, invalid_target = true,
}
M.OAUTH_ERRORS = OAUTH_ERRORS

local function unescape(s)
  s = s:gsub("%+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- Parses "a=1&b=2" into a table. With `dups`, also returns the set of names
-- seen more than once.
-- @tparam string s the form data (without "?")
-- @treturn table name -> value (the last one of a repeated name)
-- @treturn table the set of names seen more than once
function M.parse_form(s)
  local t, dups = {}, {}
  for pair in s:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = unescape(k)
    if t[k] ~= nil then dups[k] = true end
    t[k] = unescape(v)
  end
  return t, dups
end

-- The first bytes of a body, printable, for an error message: secrets are
-- scrubbed before the body is cut (errors.excerpt), so a secret straddling
-- the cut shows no prefix; control and non-ASCII bytes become "?" after.
local function snippet(acct, body)
  if body == "" then return "an empty body" end
  local s, cut = errors.excerpt(body, 60, acct._secrets)
  return ("%q%s"):format(s:gsub("[%c\128-\255]", "?"), cut and "..." or "")
end

--- A peer's `error_description` for a message: secrets scrubbed, then cut
-- to 200 characters.
-- @tparam connkit.account.Account acct the account
-- @param desc the error_description (anything: only a string is shown)
-- @treturn string ": description" or ""
function M.description(acct, desc)
  if type(desc) ~= "string" then return "" end
  local s, cut = errors.excerpt(desc, 200, acct._secrets)
  return ": " .. s .. (cut and "..." or "")
end

--- The client id and secret in use: the account's credentials override the
-- integration's (both may be templates over the parameters).
-- @tparam connkit.account.Account acct the account
-- @treturn string|nil the client id
-- @treturn string|nil the client secret
function M.client(acct)
  local o = acct.integration.oauth2
  local id, secret = acct.credentials.client_id, acct.credentials.client_secret
  if id == nil and o.client_id then id = assert(acct:fill(o.client_id)) end
  if secret == nil and o.client_secret then secret = assert(acct:fill(o.client_secret)) end
  return id, secret
end

--- Adds client authentication (RFC 6749 2.3.1) to params/headers: "basic"
-- sends id and secret form-encoded, then base64'd, in the Authorization
-- header; "post" sends them in the body; "none" sends only the id;
-- "private_key_jwt" and "client_secret_jwt" send a signed assertion
-- (connkit.auth.client_assertion).
-- @tparam connkit.account.Account acct the account
-- @tparam table params the form parameters of the request (added to)
-- @tparam table headers the header lines of the request (added to)
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (signing an assertion)
function M.authenticate(acct, params, headers)
  local o = acct.integration.oauth2
  local id, secret = M.client(acct)
  if id == nil then
    -- RFC 7523 2.1: the jwt_bearer grant's assertion may be all the authentication
    if o.grant_type == "jwt_bearer" then return true end
    return nil, errors.new("config", "oauth2: no client_id (set oauth2.client_id or credentials.client_id)")
  end
  if o.client_auth == "private_key_jwt" or o.client_auth == "client_secret_jwt" then
    return require("connkit.auth.client_assertion").authenticate(acct, params, id, secret)
  end
  if o.client_auth == "basic" and secret ~= nil then
    local cred = core.b64encode(core.escape(id, "form") .. ":" .. core.escape(secret, "form"))
    acct:_add_secret(cred)
    headers[#headers + 1] = "Authorization: Basic " .. cred
  else
    -- (none, tls_client_auth, self_signed_tls_client_auth: the id alone;
    -- the certificate authenticates the client, RFC 8705 2)
    params.client_id = id
    if o.client_auth == "post" and secret ~= nil then params.client_secret = secret end
  end
  return true
end

-- One transfer to a token endpoint. Inside a renewal task (a token fetch
-- for a non-blocking request, or one that others may wait for) it is started
-- on the shared engine and the task waits for it without blocking anybody;
-- elsewhere (login flows) it is performed at once. (Over cosockets a
-- transfer never blocks the host: it is performed where it is.)
local function transfer(spec)
  local t = transport.current()
  local w, code, msg = t.of_table(spec)
  if not w then return nil, code, msg end
  if t == transport.curl and cosync.can_await() then
    local xfer
    xfer, code, msg = t.start(w)
    if not xfer then return nil, code, msg end
    cosync.await(xfer)
    return xfer:result()
  end
  return t.perform(w)
end
M.transfer = transfer

--- Sends params to an endpoint: a form body for POST, the query for GET.
-- Returns the decoded reply fields, or nil and an error. `what` names the
-- endpoint in messages.
-- @tparam connkit.account.Account acct the account
-- @tparam string url the endpoint
-- @tparam string method "POST" or "GET"
-- @tparam table params the parameters
-- @tparam[opt] table headers header lines (added to)
-- @tparam string what the endpoint's name in messages
-- @tparam[opt] string format "json": a POST body sent as JSON (default: a
--   form body)
-- @treturn[1] table the reply's fields
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.call(acct, url, method, params, headers, what, format)
  headers = headers or {}
  headers[#headers + 1] = "Accept: application/json"
  local spec = {
    method = method, header_lines = headers, timeout = acct._timeout,
    connect_timeout = acct._connect_timeout, ca_file = acct._ca_file,
    client_tls = acct._client_tls,
  }
  if method == "GET" then
    local q = urls.encode_pairs(params, "query", "params")
    spec.url = q ~= "" and (url .. (url:find("?", 1, true) and "&" or "?") .. q) or url
  else
    spec.url = url
    if format == "json" then
      spec.body = cjson.encode(params)
      headers[#headers + 1] = "Content-Type: application/json"
    else
      spec.body = urls.encode_pairs(params, "form", "params")
      headers[#headers + 1] = "Content-Type: application/x-www-form-urlencoded"
    end
  end
  -- (the account's on_request/on_response hooks see this call as kind "auth")
  local call = acct._hooks and require("connkit.hooks").begin(acct, spec, "auth", 1, transport.current().name)
  local res, code, msg = transfer(spec)
  if call then require("connkit.hooks").finish(call, res, res == nil and { code = code } or nil) end
  if res and acct._dpop then require("connkit.auth.dpop").observe(url, res, true) end -- (its DPoP-Nonce)
  if not res then
    return nil, errors.new(code, acct:_redact(("%s %s: %s"):format(what, urls.origin(url) or url, msg)))
  end
  return M.parse_reply(acct, res, what)
end

--- The fields of a reply, or nil and an error: an OAuth `error` (in any
-- status, even 200) becomes err.code; a reply that is neither JSON nor form
-- data is described by status, content type and its first bytes.
-- @tparam connkit.account.Account acct the account
-- @tparam connkit.http.response.Response res the reply
-- @tparam string what the endpoint's name in messages
-- @treturn[1] table the fields
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.parse_reply(acct, res, what)
  local ctype = (res.headers["content-type"] or ""):lower()
  local body = res.body
  local fields
  if ctype:find("json", 1, true) or body:find("^%s*[{%[]") then
    local v = cjson.decode(body)
    if type(v) == "table" then fields = v end
  elseif ctype:find("application/x-www-form-urlencoded", 1, true)
      or (ctype:find("text/plain", 1, true) and body:find("^[%w_%.%-]+=")) then
    fields = M.parse_form(body)
  end
  if fields and type(fields.error) == "string" then
    local code = OAUTH_ERRORS[fields.error] and fields.error
      or ((res.status == 401 or res.status == 403) and "auth" or "oauth_error")
    local desc = M.description(acct, fields.error_description)
    return nil, errors.new(code, acct:_redact(("%s answered %d %s%s"):format(what, res.status, fields.error, desc)),
      { status = res.status, oauth_error = fields.error })
  end
  if res.status < 200 or res.status > 299 or not fields then
    local code = (res.status == 401 or res.status == 403) and "auth" or "token_endpoint"
    return nil, errors.new(code, ("%s answered %d%s with %s"):format(what, res.status,
      ctype ~= "" and (" (" .. ctype .. ")") or "", snippet(acct, body)), { status = res.status })
  end
  for k, v in pairs(fields) do
    if v == cjson.null then fields[k] = nil end
  end
  return fields, nil, res
end

--- A number from a reply field that may be a number or a numeric string.
local function number_of(v)
  if type(v) == "number" then return v end
  if type(v) == "string" then return tonumber(v:match("^%s*(.-)%s*$")) end
  return nil
end
M.number_of = number_of

--- A lifetime field of a reply: nil when absent, the number (a numeric
-- string is accepted; "1e999" is infinity, which M.expires_at clamps), or
-- nil and an error naming the field when it is something else ("abc", a
-- table, NaN): a guess would hide a broken server.
-- @param v the field's value
-- @tparam string field its name
-- @tparam string what the endpoint's name in messages
-- @treturn[1] number|nil the number, or nil when absent
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error naming the field
function M.number_field(v, field, what)
  if v == nil then return nil end
  local n = number_of(v)
  if n == nil or n ~= n then
    return nil, errors.new("token_endpoint", ("%s reply: %s is not a number (got a %s)")
      :format(what, field, type(v) == "string" and "non-numeric string" or type(v)))
  end
  return n
end

--- The longest lifetime a token is given (10 years): a reply's lifetime
-- above it (`"1e999"` is infinity) is clamped, so a record's times stay
-- finite numbers that a store can hold.
M.MAX_LIFETIME = 10 * 365 * 86400

--- When a token fetched at `now` expires: `ttl` seconds from now when it is
-- positive, else the epoch time `at` when it is in the future, else
-- `default` seconds from now; never more than M.MAX_LIFETIME from now.
-- @tparam number now the time of the fetch (epoch seconds)
-- @tparam[opt] number ttl expires_in
-- @tparam[opt] number at expires_at (epoch seconds)
-- @tparam number default the lifetime when neither fits
-- @treturn number the expiry (epoch seconds)
function M.expires_at(now, ttl, at, default)
  local exp
  if ttl and ttl > 0 then
    exp = now + ttl
  elseif at and at > now then
    exp = at
  else
    exp = now + default
  end
  return math.min(exp, now + M.MAX_LIFETIME)
end

--- The token record of an OAuth token reply, or nil and an error.
-- Lifetime: expires_in (number or numeric string), else expires_at (epoch
-- seconds), else the integration's refresh.default_ttl, at most
-- M.MAX_LIFETIME; a field that is there but not a number is an error
-- naming it.
-- @tparam connkit.account.Account acct the account
-- @tparam table f the reply's fields
-- @tparam string what the endpoint's name in messages
-- @treturn[1] table the record: access_token, refresh_token, token_type,
--   scope, expires_at, issued_at, ...
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "token_endpoint")
function M.token_record(acct, f, what)
  if type(f.access_token) ~= "string" or f.access_token == "" then
    return nil, errors.new("token_endpoint", what .. " reply has no access_token")
  end
  local now = core.now()
  local rec = {
    access_token = f.access_token,
    refresh_token = type(f.refresh_token) == "string" and f.refresh_token or nil,
    token_type = type(f.token_type) == "string" and f.token_type:lower() or "bearer",
    scope = type(f.scope) == "string" and f.scope or nil,
    issued_at = now,
  }
  if acct._dpop then -- (a DPoP-bound token, and the key it is bound to)
    local ok, derr = require("connkit.auth.dpop").accept(acct, rec, what)
    if not ok then return nil, derr end
  elseif rec.token_type ~= "bearer" and rec.token_type ~= "n_a" then
    return nil, errors.new("token_endpoint", what .. " issued a " .. rec.token_type .. " token; only bearer tokens are supported")
  end
  local ttl, terr = M.number_field(f.expires_in, "expires_in", what)
  if terr then return nil, terr end
  local at, aerr = M.number_field(f.expires_at, "expires_at", what)
  if aerr then return nil, aerr end
  rec.expires_at = M.expires_at(now, ttl, at, acct.integration.refresh.default_ttl)
  local merr
  rec.metadata, merr = require("connkit.auth.token_metadata").extract(acct, f, what)
  if merr then return nil, merr end
  if rec.refresh_token then acct:_add_secret(rec.refresh_token) end
  acct:_add_secret(rec.access_token)
  return rec
end

return M
