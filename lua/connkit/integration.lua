--- Integrations: validated definitions. `connkit.integration(def)` checks the
-- whole definition once, compiles every template, and raises an error naming
-- the field for anything wrong. The fields of a definition are described in
-- the README, "Integrations" and the sections after it.
-- @module connkit.integration
local check = require "connkit.check"
local urls = require "connkit.http.url"

local M = {}

--- An integration: a validated definition (its fields, normalized, are read
-- by the rest of connkit; `def` is the definition as given).
-- tostring(integration) shows name, key and auth, never a secret.
-- @type Integration
local Integration = {}
Integration.__index = Integration
Integration.__name = "connkit.integration"

local AUTH_TYPES = { "oauth2", "api_token", "basic", "custom_token", "jwt", "sftp", "none" }

-- auth types whose block lives in a module of its own
local BLOCK_MODULE = { oauth2 = "connkit.auth.oauth2", custom_token = "connkit.auth.custom_token", sftp = "connkit.sftp" }

-- auth types that send a token through auth_token
local TOKEN_AUTH = { oauth2 = true, api_token = true, custom_token = true, jwt = true }

-- auth types that attach credentials to every request
local CREDENTIAL_AUTH = { oauth2 = true, api_token = true, custom_token = true, jwt = true, basic = true }

local TOP_FIELDS = {
  name = true, key = true, auth = true, description = true, base_url = true,
  parameters = true, oauth2 = true, custom_token = true, sftp = true,
  auth_token = true, request_parameters = true, retry = true, refresh = true,
  tls = true, timeout = true, connect_timeout = true, allowed_origins = true,
  allow_insecure_http = true, rate_limit = true,
  verify = true, on_request = true, on_response = true, on_refresh_error = true, -- (connkit.hooks, connkit.account_verify)
  pagination = true, -- (connkit.http.paginate_check)
  jwt = true, -- (connkit.auth.jwt_auth)
}

M.REFRESH_DEFAULTS = {
  window = 1800,       -- refresh when the token expires within this many seconds
  on_status = { 401, 403 },
  min_ttl = 300,       -- tokens shorter than this are refreshed at `fraction` of life left
  fraction = 0.5,
  default_ttl = 3600,  -- lifetime assumed when the server gives none
  cooldown = 5,        -- seconds before trying again after a failed refresh
}

--- Normalizes `parameters` (map or list form) into name -> spec.
local function check_parameters(ctx, params)
  local out, secret = {}, {}
  if params == nil then return out, secret end
  check.table(ctx, "parameters", params)
  local function one(name, spec, field)
    if type(name) ~= "string" or not name:find("^[%a_][%w_]*$") then
      ctx.fail(field, "must be a name made of letters, digits and _")
    end
    if check.BUILTINS[name] then
      ctx.fail(field, ("'%s' is a built-in placeholder and cannot be a parameter"):format(name))
    end
    if out[name] then ctx.fail(field, "is declared twice") end
    check.table(ctx, field, spec)
    check.known_fields(ctx, spec, field, { required = true, default = true, secret = true, description = true })
    local p = {
      required = check.boolean(ctx, field .. ".required", spec.required, false),
      secret = check.boolean(ctx, field .. ".secret", spec.secret, false),
      description = check.string(ctx, field .. ".description", spec.description, { empty = true }),
    }
    if spec.default ~= nil then
      if type(spec.default) ~= "string" and type(spec.default) ~= "number" then
        ctx.fail(field .. ".default", "must be a string or a number")
      end
      if p.required then ctx.fail(field, "cannot be required and have a default") end
      p.default = spec.default
    end
    out[name] = p
    if p.secret then secret[name] = true end
  end
  local n = #params
  for i = 1, n do
    -- list form: { "serverName", "region" }: names only, each required
    local name = params[i]
    if type(name) ~= "string" then ctx.fail("parameters[" .. i .. "]", "must be a parameter name") end
    one(name, { required = true }, "parameters." .. tostring(name))
  end
  for k, v in pairs(params) do
    if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then
      one(k, v, "parameters." .. tostring(k))
    end
  end
  return out, secret
end

local function check_auth_token(ctx, def, names)
  local at = def.auth_token
  if not TOKEN_AUTH[def.auth] then
    if at ~= nil then ctx.fail("auth_token", ('is not used with auth = "%s"'):format(def.auth)) end
    return nil
  end
  at = at or {}
  check.table(ctx, "auth_token", at)
  check.known_fields(ctx, at, "auth_token", { type = true, name = true, value = true })
  local out = {
    type = check.string(ctx, "auth_token.type", at.type, { default = "header", one_of = { "header", "query" } }),
  }
  out.name = check.string(ctx, "auth_token.name", at.name,
    { default = out.type == "header" and "Authorization" or "access_token" })
  if out.type == "header" and not out.name:find(check.HEADER_NAME) then
    ctx.fail("auth_token.name", "is not a valid header name")
  end
  local value = at.value
  if value == nil then value = out.type == "header" and "Bearer {token}" or "{token}" end
  local used
  out.template, used = check.template(ctx, "auth_token.value", value,
    out.type == "header" and "header" or "raw", names)
  local has_token = false
  for _, n in ipairs(used) do
    if n == "token" then has_token = true end
  end
  if not has_token then ctx.fail("auth_token.value", "must contain {token}") end
  return out
end

-- headers/query of request_parameters: sorted lists of { name, template }
local function check_request_parameters(ctx, rp, names)
  local out = { headers = {}, query = {} }
  if rp == nil then return out end
  check.table(ctx, "request_parameters", rp)
  check.known_fields(ctx, rp, "request_parameters", { headers = true, query = true })
  for _, part in ipairs({ "headers", "query" }) do
    local t = rp[part]
    if t ~= nil then
      check.table(ctx, "request_parameters." .. part, t)
      for k, v in pairs(t) do
        local field = "request_parameters." .. part .. "." .. tostring(k)
        if type(k) ~= "string" or k == "" then ctx.fail(field, "must be named by a string") end
        if part == "headers" and not k:find(check.HEADER_NAME) then ctx.fail(field, "is not a valid header name") end
        local tpl = check.template(ctx, field, v, part == "headers" and "header" or "raw", names)
        out[part][#out[part] + 1] = { name = k, template = tpl }
      end
      table.sort(out[part], function(a, b) return a.name < b.name end)
    end
  end
  return out
end

local function check_refresh(ctx, r)
  local d = M.REFRESH_DEFAULTS
  r = r or {}
  check.table(ctx, "refresh", r)
  check.known_fields(ctx, r, "refresh",
    { window = true, on_status = true, min_ttl = true, fraction = true, default_ttl = true, cooldown = true,
      on_body = true, when = true })
  -- (on_body and when: connkit.http.refresh_rules)
  return require("connkit.http.refresh_rules").check(ctx, r, {
    window = check.number(ctx, "refresh.window", r.window, { default = d.window, min = 0 }),
    on_status = check.statuses(ctx, "refresh.on_status", r.on_status, { [401] = true, [403] = true }),
    min_ttl = check.number(ctx, "refresh.min_ttl", r.min_ttl, { default = d.min_ttl, min = 0 }),
    fraction = check.number(ctx, "refresh.fraction", r.fraction, { default = d.fraction, min = 0.01, max = 0.99 }),
    default_ttl = check.number(ctx, "refresh.default_ttl", r.default_ttl, { default = d.default_ttl, min = 1 }),
    cooldown = check.number(ctx, "refresh.cooldown", r.cooldown, { default = d.cooldown, min = 0 }),
  })
end

local function check_retry(ctx, r, field)
  if r == nil then return nil end
  check.table(ctx, field, r)
  check.known_fields(ctx, r, field, { max = true, statuses = true, max_wait = true, methods = true, base = true })
  local methods
  if r.methods ~= nil then
    check.table(ctx, field .. ".methods", r.methods)
    methods = {}
    for i, m in ipairs(r.methods) do
      methods[check.string(ctx, field .. ".methods[" .. i .. "]", m):upper()] = true
    end
  end
  return {
    max = check.number(ctx, field .. ".max", r.max, { default = 3, integer = true, min = 0, max = 20 }),
    statuses = check.statuses(ctx, field .. ".statuses", r.statuses, { [429] = true, [503] = true }),
    max_wait = check.number(ctx, field .. ".max_wait", r.max_wait, { default = 30, min = 0 }),
    base = check.number(ctx, field .. ".base", r.base, { default = 0.5, min = 0 }),
    methods = methods,
  }
end
M.check_retry = check_retry

-- (ca_file and the mTLS client certificate: connkit.tls)
local function check_tls(ctx, t, field, names)
  return require("connkit.tls").check(ctx, t, field, names)
end
M.check_tls = check_tls

--- Validates a definition and returns an integration object
-- (`connkit.integration(def)`).
-- @tparam table def the definition (README "Integrations"): name, key,
--   auth, base_url, parameters, the auth type's block (oauth2,
--   custom_token, jwt, sftp), auth_token, request_parameters, retry,
--   refresh, rate_limit, pagination, verify, tls, timeout, connect_timeout,
--   allowed_origins, allow_insecure_http, on_request, on_response,
--   on_refresh_error, description
-- @treturn Integration the integration
-- @raise naming the field, for a missing or bad field, an unknown one, a
--   bad key, an unknown auth type, a `{name}` that is neither a parameter
--   nor a built-in, a template that does not parse
-- @within Definitions
function M.new(def)
  if type(def) ~= "table" then
    error("connkit.integration: the definition must be a table, not a " .. type(def), 2)
  end
  local key = def.key
  local ctx = check.context("integration '" .. (type(key) == "string" and key or "?") .. "'")
  check.string(ctx, "key", key, { required = true, pattern = "^[%a%d]+$", pattern_msg = "must be letters and digits only" })
  check.known_fields(ctx, def, nil, TOP_FIELDS)
  local self = setmetatable({}, Integration)
  self.name = check.string(ctx, "name", def.name, { required = true })
  self.key = key
  self.auth = check.string(ctx, "auth", def.auth, { required = true, one_of = AUTH_TYPES })
  self.description = check.string(ctx, "description", def.description, { empty = true })
  self.parameters, self.secret_parameters = check_parameters(ctx, def.parameters)
  local names = self.parameters

  self.allow_insecure_http = check.boolean(ctx, "allow_insecure_http", def.allow_insecure_http, false)
  -- URL templates: checked now as far as their literal text goes; what
  -- placeholders hide is checked on the rendered URL at account creation
  self.url_checks = {}
  local function url(field, str, opts)
    check.string(ctx, field, str, { required = true })
    local tpl = check.template(ctx, field, str, "url", names)
    opts.insecure_ok = self.allow_insecure_http
    if urls.check_definition(ctx, field, str, opts) then
      self.url_checks[#self.url_checks + 1] = { field = field, template = tpl, secure = opts.secure,
        origin = opts.origin, insecure_ok = opts.insecure_ok }
    end
    return tpl
  end
  if def.base_url ~= nil then self.base_url = url("base_url", def.base_url, {}) end
  self.allowed_origins = {}
  if def.allowed_origins ~= nil then
    check.table(ctx, "allowed_origins", def.allowed_origins)
    for k in pairs(def.allowed_origins) do
      if type(k) ~= "number" or k < 1 or k > #def.allowed_origins or k % 1 ~= 0 then
        ctx.fail("allowed_origins", 'must be a list of origins such as { "https://cdn.acme.test" }')
      end
    end
    for i, o in ipairs(def.allowed_origins) do
      self.allowed_origins[i] = url("allowed_origins[" .. i .. "]", o, { origin = true })
    end
  end
  for block, mod in pairs(BLOCK_MODULE) do
    if def[block] ~= nil and self.auth ~= block then
      ctx.fail(block, ('is only for auth = "%s"'):format(block))
    end
    if self.auth == block then
      check.table(ctx, block, def[block], { required = true })
      self[block] = require(mod).check_definition(def[block], ctx.fail, {
        ctx = ctx, names = names,
        template = function(field, str, kind, opts) return check.template(ctx, field, str, kind, names, opts) end,
        -- a token, authorization or revocation endpoint: https:// unless loopback
        secure_url = function(field, str) return url(field, str, { secure = true }) end,
      })
    end
  end
  -- the jwt block: auth = "jwt", the jwt_bearer grant, {jwt} in a custom token
  self.jwt = require("connkit.auth.jwt_auth").check_definition(ctx, def, self, names)
  self.auth_token = check_auth_token(ctx, def, names)
  if self.oauth2 and self.oauth2.dpop then -- (the DPoP scheme, RFC 9449 7.1)
    require("connkit.auth.dpop").check_auth_token(ctx, def.auth_token, self.auth_token, names)
  end
  self.request_parameters = check_request_parameters(ctx, def.request_parameters, names)
  self.refresh = check_refresh(ctx, def.refresh)
  self.retry = check_retry(ctx, def.retry, "retry")
  self.rate_limit = require("connkit.http.rate_limit").check(ctx, def.rate_limit, "rate_limit")
  self.tls = check_tls(ctx, def.tls, "tls", names)
  if self.oauth2 then require("connkit.tls").check_client_auth(ctx, self.tls, self.oauth2.client_auth) end
  self.pagination = require("connkit.http.paginate_check").definition(ctx, def.pagination)
  self.timeout = check.field(ctx, "timeout", def.timeout, "timeout", 60)
  self.connect_timeout = check.field(ctx, "connect_timeout", def.connect_timeout, "timeout", 10)
  self.verify = require("connkit.account_verify").check_definition(ctx, def.verify, names)
  self.hooks = require("connkit.hooks").check(ctx, def)
  -- credentials go only to the origins the integration names (checked last,
  -- so that a wrong field is reported first)
  local rp = self.request_parameters
  self.sends_credentials = CREDENTIAL_AUTH[self.auth] or #rp.headers > 0 or #rp.query > 0
  if self.sends_credentials and not self.base_url and #self.allowed_origins == 0 then
    ctx.fail(nil, (CREDENTIAL_AUTH[self.auth] and ('auth = "%s" attaches credentials'):format(self.auth)
      or "request_parameters are attached") .. " to every request, but no origin is named for them:"
      .. " set base_url or allowed_origins (requests to other origins go without them)")
  end
  self.def = def
  return self
end

function Integration:__tostring()
  return ("connkit.integration %q (key %s, auth %s)"):format(self.name, self.key, self.auth)
end

--- Creates a connected account of this integration; see connkit.account.
-- @tparam table opts id, parameters, credentials, store, on_token,
--   on_request, on_response, on_refresh_error, tls, timeout (see
--   connkit.account.new)
-- @treturn connkit.account.Account the account
-- @raise naming the field, for unknown options, missing parameters or
--   credentials
function Integration:account(opts)
  return require("connkit.account").new(self, opts)
end

--- Reads a definition from a JSON file or a Lua file (which returns the
-- table; it sees only os.getenv, string, table, math and the basic
-- functions) and validates it (`connkit.load(path)`).
-- @tparam string path a .json file, or a .lua file that returns the
--   definition
-- @treturn Integration the integration
-- @raise when the file cannot be read or parsed, or the definition is bad
-- @within Definitions
function M.load(path)
  if type(path) ~= "string" then error("connkit.load: path must be a string", 2) end
  local f, err = io.open(path, "rb")
  if not f then error("connkit.load: cannot read " .. path .. ": " .. tostring(err), 2) end
  local text = f:read("*a")
  f:close()
  local def
  if path:find("%.json$") or (not path:find("%.lua$") and text:find("^%s*{")) then
    local cjson = require "cjson.safe"
    local v, jerr = cjson.decode(text)
    if type(v) ~= "table" then error("connkit.load: " .. path .. " is not a JSON object: " .. tostring(jerr), 2) end
    def = check.from_json(v, cjson.null) -- (null: absent; 8080.0: 8080)
  else
    local env = {
      os = { getenv = os.getenv }, string = string, table = table, math = math,
      tostring = tostring, tonumber = tonumber, pairs = pairs, ipairs = ipairs,
      type = type, error = error, select = select,
    }
    local chunk, lerr
    if setfenv then
      chunk, lerr = loadstring(text, "@" .. path)
      if chunk then setfenv(chunk, env) end
    else
      chunk, lerr = load(text, "@" .. path, "t", env)
    end
    if not chunk then error("connkit.load: " .. lerr, 2) end
    local ok, v = pcall(chunk)
    if not ok then error("connkit.load: " .. path .. ": " .. tostring(v), 2) end
    if type(v) ~= "table" then error("connkit.load: " .. path .. " must return a table", 2) end
    def = v
  end
  return M.new(def)
end

M.Integration = Integration
return M
