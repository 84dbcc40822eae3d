--- Connected accounts: an integration filled with parameters and
-- credentials. The account renders what never changes (base URL, request
-- parameters, the auth header or query pair) once, and again only when its
-- token changes, so a request costs little more than the transfer itself.
--
-- An account comes from `integration:account { ... }` (connkit.integration).
-- Its methods are documented where they live: here (fill, verify, pages,
-- items, sftp), in connkit.account_tokens (token, refresh, status,
-- exchange, id_token_claims), in connkit (request, prepare, get, post,
-- put, patch, delete, head), in connkit.auth.oauth2 (authorize_url,
-- finish_authorization, revoke) and in connkit.auth.login (login,
-- login_device).
-- @module connkit.account
local core = require "connkit.core"
local check = require "connkit.check"
local errors = require "connkit.errors"
local cjson = require "cjson"
local inputs = require "connkit.account_inputs"

local M = {}

local Account = {}
Account.__index = Account
Account.__name = "connkit.account"
M.Account = Account

local OPT_FIELDS = {
  id = true, parameters = true, credentials = true, store = true, on_token = true,
  tls = true, timeout = true,
  on_request = true, on_response = true, on_refresh_error = true, -- (connkit.hooks)
}

--- Adds a secret (and its URL-encoded forms) to the strings every message
-- and tostring of this account is scrubbed of.
-- Secrets learnt after creation (tokens, verifiers) are kept only while
-- recent: the list holds the account's own secrets plus the last 64 added.
local MAX_SECRETS = 256
function Account:_add_secret(s)
  if type(s) == "number" then s = core.format_number(s) end
  if type(s) ~= "string" or #s < 4 then return end
  local list, set = self._secrets, self._secret_set
  -- as it is, URL-encoded, and JSON-escaped (an echo in a JSON body)
  local json = cjson.encode(s):sub(2, -2)
  for _, form in ipairs({ s, core.escape(s, "query"), core.escape(s, "form"), json, (json:gsub("\\/", "/")) }) do
    if not set[form] then
      set[form] = true
      list[#list + 1] = form
    end
  end
  if #list > MAX_SECRETS then
    local keep, fixed = {}, self._fixed_secrets or 0
    for i = 1, fixed do keep[#keep + 1] = list[i] end
    for i = #list - 63, #list do keep[#keep + 1] = list[i] end
    set = {}
    for _, x in ipairs(keep) do set[x] = true end
    self._secrets, self._secret_set = keep, set
  end
end

--- A message with this account's secrets replaced by "***".
-- @local
function Account:_redact(msg)
  return errors.redact(msg, self._secrets)
end

-- template cache for account:fill (definition strings are few and long-lived)
local fill_cache = setmetatable({}, { __mode = "k" })

--- Renders a template with this account's parameters and credentials.
-- @tparam string|userdata tpl a template string ("{name}" placeholders) or a
--   compiled template (core.template)
-- @tparam[opt="raw"] string ctx where the value goes, for its escaping: "raw" |
--   "path" | "query" | "form" | "header" | "url"
-- @tparam[opt] table vars extra values (over the account's)
-- @treturn[1] string the rendered string
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "template": a missing value, a
--   path segment "." or "..", CR/LF/NUL in a header)
function Account:fill(tpl, ctx, vars)
  if type(tpl) == "string" then
    ctx = ctx or "raw"
    local bykind = fill_cache[self]
    if not bykind then bykind = {}; fill_cache[self] = bykind end
    local key = ctx .. "\0" .. tpl
    local c = bykind[key]
    if not c then
      local err
      c, err = core.template(tpl, ctx)
      if not c then return nil, errors.new("template", "template does not parse: " .. err) end
      bykind[key] = c
    end
    tpl = c
  end
  local s, why, name, where = tpl:render(vars or self._values, self._values)
  if s then return s end
  if why == "missing" then
    return nil, errors.new("template", ("no value for {%s}"):format(name))
  end
  if why == "dots" then
    return nil, errors.new("template", ("the value of {%s} would make a path segment '.' or '..',"
      .. " which walks up the path"):format(name))
  end
  return nil, errors.new("template", ("the value of {%s} cannot be used in a %s"):format(name,
    where == "header" and "header (it holds CR, LF or NUL)" or (where or "template")))
end

--- Renders a definition template at account creation; raises naming the field.
-- @local
local function fill_or_fail(self, ctx, field, tpl)
  local s, err = self:fill(tpl)
  if not s then ctx.fail(field, "cannot be filled: " .. err.message) end
  return s
end
M.fill_or_fail = fill_or_fail -- (connkit.account_tokens)

--- Renders what does not change between requests: base URL, request
-- parameter header lines and query string.
local function render_static(self, ctx)
  local integ = self.integration
  if integ.base_url then self._base = fill_or_fail(self, ctx, "base_url", integ.base_url) end
  -- where credentials may go (connkit.http.url): base_url's origin, allowed_origins
  self._origins = require("connkit.http.url").account_origins(self, ctx,
    function(field, tpl) return fill_or_fail(self, ctx, field, tpl) end)
  local lines, q = {}, {}
  for _, h in ipairs(integ.request_parameters.headers) do
    lines[#lines + 1] = h.name .. ": " .. fill_or_fail(self, ctx, "request_parameters.headers." .. h.name, h.template)
  end
  for _, p in ipairs(integ.request_parameters.query) do
    q[#q + 1] = core.escape(p.name, "query") .. "="
      .. core.escape(fill_or_fail(self, ctx, "request_parameters.query." .. p.name, p.template), "query")
  end
  self._static_lines = lines
  self._static_query = table.concat(q, "&")
end
M.render_static = render_static -- (again after a token brings new metadata: connkit.auth.token_metadata)

--- Sets the token that goes out with every request and re-renders the auth
-- header or query pair. Returns true, or nil and an error.
-- @local
function Account:_set_token(token)
  local at = self.integration.auth_token
  self._auth_line, self._auth_query = nil, nil
  self._values.token = token
  if token ~= nil then
    self:_add_secret(token)
    local v, err = self:fill(at.template, nil, { token = token })
    if not v then
      self._values.token = nil
      self:_rebuild_lines()
      return nil, err
    end
    self:_add_secret(v)
    if at.type == "header" then
      self._auth_line = at.name .. ": " .. v
    else
      self._auth_query = core.escape(at.name, "query") .. "=" .. core.escape(v, "query")
    end
  end
  self:_rebuild_lines()
  return true
end

--- The header lines and query string sent with every request.
-- @local
function Account:_rebuild_lines()
  local lines = {}
  if self._auth_line then lines[1] = self._auth_line end
  for _, l in ipairs(self._static_lines) do lines[#lines + 1] = l end
  self._lines = lines
  local q = self._static_query
  if self._auth_query then q = (q ~= "" and (q .. "&") or "") .. self._auth_query end
  self._query = q
end

--- Creates an account: `integration:account(opts)` calls this (README
-- "Accounts").
-- @tparam connkit.integration.Integration integ the integration
-- @tparam table opts the account:
--
--  * `id` (string, default the integration's key): its name in the store
--  * `parameters` (table): values of the integration's parameters
--  * `credentials` (table): per auth type (token; username, password;
--    private_key, passphrase; client_id, client_secret, client_key)
--  * `store` (table): a token store (default connkit.store.memory())
--  * `on_token` (function(account, info)): called after each new token
--  * `on_request`, `on_response`, `on_refresh_error` (functions): hooks,
--    called after the integration's (connkit.hooks)
--  * `tls` (table): ca_file, cert_file, key_file, key_password over the
--    integration's
--  * `timeout` (number): seconds, the default of every request
-- @treturn Account the account
-- @raise naming the field, for unknown options, missing, empty or unknown
--   parameters or credentials, a bad store, a template that cannot be filled
function M.new(integ, opts)
  if getmetatable(integ) ~= require("connkit.integration").Integration then
    check.raise("account: call it as integration:account{...}")
  end
  if type(opts) ~= "table" then
    check.raise("integration '" .. integ.key .. "': account options must be a table, not a " .. type(opts))
  end
  local id = opts.id == nil and integ.key or opts.id
  local ctx = check.context(("account '%s' of integration '%s'"):format(tostring(id), integ.key))
  check.string(ctx, "id", id)
  check.known_fields(ctx, opts, nil, OPT_FIELDS)
  local self = setmetatable({ id = id, integration = integ, _secrets = {}, _secret_set = {} }, Account)
  self._values = inputs.parameters(integ, ctx, opts.parameters)
  self.credentials = inputs.credentials(integ, ctx, opts.credentials)
  for name in pairs(integ.secret_parameters) do self:_add_secret(self._values[name]) end
  local public = inputs.public_credentials(integ)
  for k, v in pairs(self.credentials) do
    if not public[k] then self:_add_secret(v) end
    if k == "username" or k == "password" then self._values[k] = v end
  end
  self.on_token = check.field(ctx, "on_token", opts.on_token, "callable")
  require("connkit.hooks").setup(self, require("connkit.hooks").check(ctx, opts))
  self.store = opts.store
  if self.store ~= nil then
    if type(self.store) ~= "table" then ctx.fail("store", "must be a store table") end
    for _, f in ipairs({ "get", "put", "lock" }) do
      if type(self.store[f]) ~= "function" then ctx.fail("store", "has no " .. f .. "() function") end
    end
  end
  require("connkit.tls").setup(self, ctx, opts.tls) -- _ca_file, _client_tls (mTLS)
  self._timeout = check.field(ctx, "timeout", opts.timeout, "timeout", integ.timeout)
  self._connect_timeout = integ.connect_timeout
  local metadata = require "connkit.auth.token_metadata"
  if metadata.pending(self) then
    -- a parameter the first token fills: rendered when it comes
    self._meta_pending, self._static_lines, self._static_query = true, {}, ""
  else
    render_static(self, ctx)
  end
  self._rebase = metadata.of(integ) ~= nil -- (base_url may change with each token)

  local auth = integ.auth
  if auth == "api_token" then
    if not core.header_safe(self.credentials.token) then ctx.fail("credentials.token", "holds CR, LF or NUL") end
    local ok, err = self:_set_token(self.credentials.token)
    if not ok then ctx.fail("credentials.token", err.message) end
  elseif auth == "basic" then
    local user, pass = self.credentials.username, self.credentials.password
    if user:find(":", 1, true) then ctx.fail("credentials.username", "must not contain ':' (RFC 7617)") end
    local value = "Basic " .. core.b64encode(user .. ":" .. pass)
    self:_add_secret(value:sub(7))
    self._auth_line = "Authorization: " .. value
    self:_rebuild_lines()
  else
    self:_rebuild_lines()
  end
  if auth == "oauth2" or auth == "custom_token" or auth == "jwt" then
    require("connkit.account_tokens").setup(self, ctx)
  end
  self._fixed_secrets = #self._secrets
  return self
end

function Account:__tostring()
  return ("connkit.account %q (integration %s, auth %s)"):format(tostring(self.id),
    self.integration.key, self.integration.auth)
end

--- Checks that the account works with the integration's `verify` request:
-- true and the response, or nil and an error (see connkit.account_verify).
-- @treturn[1] boolean true
-- @treturn[1] connkit.http.response.Response the response
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error: the request's own, or code "verify" (with
--   `status` and `excerpt`) for a status the verify block does not expect
-- @raise when the integration has no `verify` block
function Account:verify()
  return require("connkit.account_verify").verify(self)
end

--- Iterates the pages of a paginated endpoint: `for page, err in
-- acct:pages(url, opts)`; see connkit.http.paginate and README "Pagination".
-- (no tail calls: Lua 5.1 would lose the caller's frame, and with it the
-- line a wrong option is reported at)
-- @tparam string url the first page's URL (absolute or relative to base_url)
-- @tparam[opt] table opts every request option, plus `pagination` (over the
--   integration's): type ("cursor" | "next_url" | "link" | "offset" |
--   "page"), cursor, next_url, param, param_in, items, limit_param, limit,
--   max_pages, ...
-- @return an iterator for a generic for: each step gives the page (a
--   response), or false and an error once (codes "pagination", "max_pages",
--   "pagination_loop", or the request's), then the loop ends
-- @raise for a bad option, naming it
-- @usage for page, err in acct:pages("/contacts", { pagination = { type = "cursor",
--   cursor = "meta.next", param = "cursor", items = "data" } }) do ... end
function Account:pages(url, opts)
  local iter, s, c, closer = require("connkit.http.paginate").pages(self, url, opts)
  return iter, s, c, closer
end

--- Iterates the items of every page: `for item, err in acct:items(url, opts)`.
-- @tparam string url the first page's URL
-- @tparam[opt] table opts as for pages (pagination.items: where the items are)
-- @return an iterator for a generic for: each step gives an item (a decoded
--   JSON value), or false and an error once, then the loop ends
-- @raise for a bad option, naming it
function Account:items(url, opts)
  local iter, s, c, closer = require("connkit.http.paginate").items(self, url, opts)
  return iter, s, c, closer
end

--- Opens an SFTP session (auth = "sftp"): connects, verifies the host key,
-- logs in; see connkit.sftp and README "SFTP".
-- @tparam[opt] table opts `timeout` (seconds for each blocking step) over
--   the definition's `sftp.timeout`
-- @treturn[1] connkit.sftp.Session the session (closed by close(), by
--   garbage collection, or by `<close>` on Lua 5.4)
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error ("host_key_unknown", "host_key_mismatch",
--   "auth", "connect", "timeout", ...)
-- @raise when the integration's auth is not "sftp"
function Account:sftp(opts)
  if self.integration.auth ~= "sftp" then
    check.raise(("account '%s': sftp() needs auth = \"sftp\""):format(tostring(self.id)))
  end
  return require("connkit.sftp").connect(self, opts)
end

-- The token methods live in connkit.account_tokens, which adds them to
-- Account: it is loaded here (this module made visible to it first) so
-- that every account has them.
package.loaded["connkit.account"] = M
require "connkit.account_tokens"

return M
