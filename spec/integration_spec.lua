-- Integration definitions (API.md section 1, issue 2 item 3): every rule is
-- checked field by field, with the field named in the error; connkit.load
-- from JSON and Lua files; tostring without secrets.
local connkit = require "connkit"
local helpers = require "helpers"

local KEY = "acmecrm"
local PREFIX = "integration '" .. KEY .. "': "

local function deepcopy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deepcopy(x) end
  return out
end

-- A valid definition of the given auth type; `patch(def)` changes it.
local function def(auth, patch)
  auth = auth or "api_token"
  local d = {
    name = "Acme CRM",
    key = KEY,
    auth = auth,
    base_url = "https://{serverName}.acme.test/api",
    parameters = {
      serverName = { required = true },
      region = { default = "us" },
      apiKey = { secret = true },
    },
  }
  if auth == "oauth2" then
    d.oauth2 = {
      grant_type = "authorization_code",
      token_url = "https://{serverName}.acme.test/oauth2/v1/token",
      authorize_url = "https://{serverName}.acme.test/oauth2/v1/authorize",
      revoke_url = "https://{serverName}.acme.test/oauth2/v1/revoke",
      scope = "read write",
      client_id = "abc",
      client_secret = "xyz",
      extra_params = { audience = "{region}-api" },
    }
  elseif auth == "custom_token" then
    d.custom_token = {
      token_url = "https://{serverName}.acme.test/login",
      params = { user = "{username}", password = "{password}" },
      token_path = "data.token",
      expires_in_path = "data.ttl",
      ttl = 3600,
    }
  end
  if patch then patch(d) end
  return d
end

-- The message of the error connkit.integration(d) raises (asserts it raises).
local function error_of(d)
  local ok, err = pcall(connkit.integration, d)
  assert.is_false(ok, "the definition was accepted")
  return tostring(err)
end

-- Asserts that d is refused with an error that names `field` right after the
-- subject ("integration 'acmecrm': <field> ...") and contains `words`.
local function refuses(d, field, words, key)
  local err = error_of(d)
  local prefix = key and ("integration '" .. key .. "': ") or PREFIX
  assert.matches(prefix .. field .. " ", err, 1, true)
  if words then assert.matches(words, err, 1, true) end
  return err
end

local function with(auth, patch) return def(auth, patch) end

describe("integration: a valid definition", function()
  it("is accepted for every auth type but sftp, with its fields kept", function()
    for _, auth in ipairs({ "api_token", "basic", "none", "oauth2", "custom_token" }) do
      local d = def(auth)
      if auth == "basic" or auth == "none" then d.auth_token = nil end
      local integ = connkit.integration(d)
      assert.equal("Acme CRM", integ.name)
      assert.equal(KEY, integ.key)
      assert.equal(auth, integ.auth)
    end
  end)

  it("normalizes map-form parameters", function()
    local integ = connkit.integration(def())
    assert.is_true(integ.parameters.serverName.required)
    assert.is_false(integ.parameters.region.required)
    assert.equal("us", integ.parameters.region.default)
    assert.is_true(integ.parameters.apiKey.secret)
    assert.is_true(integ.secret_parameters.apiKey)
    assert.is_nil(integ.secret_parameters.region)
  end)

  it("accepts list-form parameters, each required", function()
    local integ = connkit.integration(with("api_token", function(d)
      d.parameters = { "serverName", "region" }
    end))
    assert.is_true(integ.parameters.serverName.required)
    assert.is_true(integ.parameters.region.required)
    assert.is_nil(integ.parameters.region.default)
  end)

  it("accepts list and map forms mixed", function()
    local integ = connkit.integration(with("api_token", function(d)
      d.parameters = { "serverName", region = { default = "eu" } }
    end))
    assert.is_true(integ.parameters.serverName.required)
    assert.equal("eu", integ.parameters.region.default)
  end)

  it("gives auth_token its defaults: header Authorization: Bearer {token}", function()
    local integ = connkit.integration(def())
    assert.equal("header", integ.auth_token.type)
    assert.equal("Authorization", integ.auth_token.name)
    assert.same({ "token" }, integ.auth_token.template:names())
    assert.equal("Bearer t0k", integ.auth_token.template:render({ token = "t0k" }))
  end)

  it("gives a query auth_token the name access_token and value {token}", function()
    local integ = connkit.integration(with("api_token", function(d) d.auth_token = { type = "query" } end))
    assert.equal("query", integ.auth_token.type)
    assert.equal("access_token", integ.auth_token.name)
    assert.equal("t0k", integ.auth_token.template:render({ token = "t0k" }))
  end)

  it("has no auth_token for basic and none", function()
    assert.is_nil(connkit.integration(def("basic")).auth_token)
    assert.is_nil(connkit.integration(def("none")).auth_token)
  end)

  it("applies the refresh defaults of API.md", function()
    local r = connkit.integration(def("oauth2")).refresh
    assert.equal(1800, r.window)
    assert.equal(300, r.min_ttl)
    assert.same({ [401] = true, [403] = true }, r.on_status)
  end)

  it("keeps given refresh and retry rules", function()
    local integ = connkit.integration(with("oauth2", function(d)
      d.refresh = { window = 60, on_status = { 401 }, min_ttl = 10 }
      d.retry = { max = 5, statuses = { 502 }, max_wait = 3 }
    end))
    assert.equal(60, integ.refresh.window)
    assert.same({ [401] = true }, integ.refresh.on_status)
    assert.equal(10, integ.refresh.min_ttl)
    assert.equal(5, integ.retry.max)
    assert.same({ [502] = true }, integ.retry.statuses)
    assert.equal(3, integ.retry.max_wait)
  end)

  it("sorts request_parameters and compiles their templates", function()
    local integ = connkit.integration(with("api_token", function(d)
      d.request_parameters = {
        headers = { ["X-Region"] = "{region}", ["A-First"] = "1" },
        query = { api_version = "2024-01", n = 5 },
      }
    end))
    local h = integ.request_parameters.headers
    assert.equal("A-First", h[1].name)
    assert.equal("X-Region", h[2].name)
    assert.equal("eu", h[2].template:render({ region = "eu" }))
    local q = integ.request_parameters.query
    assert.equal("api_version", q[1].name)
    assert.equal("5", q[2].template:render({}))
  end)

  it("compiles base_url as a url template", function()
    local integ = connkit.integration(def())
    assert.same({ serverName = "host" }, integ.base_url:contexts())
  end)

  it("accepts built-in placeholders anywhere a template is", function()
    assert.truthy(connkit.integration(with("basic", function(d)
      d.request_parameters = { headers = { ["X-User"] = "{username}" }, query = { p = "{password}" } }
    end)))
  end)

  it("takes {{ and }} as literal braces in a definition", function()
    local integ = connkit.integration(with("api_token", function(d)
      d.request_parameters = { headers = { ["X-Json"] = '{{"region":"{region}"}}' } }
    end))
    assert.equal('{"region":"eu"}', integ.request_parameters.headers[1].template:render({ region = "eu" }))
  end)
end)

describe("integration: top-level fields", function()
  it("refuses a definition that is not a table", function()
    for _, v in ipairs({ "acmecrm", 42, true }) do
      local ok, err = pcall(connkit.integration, v)
      assert.is_false(ok)
      assert.matches("definition must be a table", tostring(err), 1, true)
    end
    assert.is_false((pcall(connkit.integration)))
  end)

  it("requires key", function()
    refuses(with(nil, function(d) d.key = nil end), "key", "is required", "?")
  end)

  it("refuses an empty key", function()
    refuses(with(nil, function(d) d.key = "" end), "key", "must not be empty", "")
  end)

  it("refuses a key that is not letters and digits", function()
    for _, k in ipairs({ "acme-crm", "acme crm", "acme_crm", "acme.crm", "acmé", "a/b" }) do
      refuses(with(nil, function(d) d.key = k end), "key", "letters and digits", k)
    end
  end)

  it("accepts a key of letters and digits", function()
    assert.equal("Acme2CRM", connkit.integration(with(nil, function(d) d.key = "Acme2CRM" end)).key)
  end)

  it("refuses a key that is not a string", function()
    refuses(with(nil, function(d) d.key = 42 end), "key", "must be a string", "?")
  end)

  it("requires name", function()
    refuses(with(nil, function(d) d.name = nil end), "name", "is required")
  end)

  it("refuses a name that is not a string", function()
    refuses(with(nil, function(d) d.name = { "x" } end), "name", "must be a string")
  end)

  it("requires auth", function()
    refuses(with(nil, function(d) d.auth = nil end), "auth", "is required")
  end)

  it("refuses an unknown auth type and lists the known ones", function()
    local err = refuses(with(nil, function(d) d.auth = "saml" end), "auth", "must be one of")
    for _, a in ipairs({ "oauth2", "api_token", "basic", "custom_token", "sftp", "none" }) do
      assert.matches('"' .. a .. '"', err, 1, true)
    end
    refuses(with(nil, function(d) d.auth = "API_TOKEN" end), "auth", "must be one of")
  end)

  it("refuses an unknown top-level field, by name", function()
    refuses(with(nil, function(d) d.colour = "red" end), "colour", "is not a known field")
    refuses(with(nil, function(d) d.baseUrl = "https://x.test" end), "baseUrl", "is not a known field")
    refuses(with(nil, function(d) d[1] = "x" end), "[1]", "is not a known field")
  end)

  it("refuses a description that is not a string", function()
    refuses(with(nil, function(d) d.description = 5 end), "description", "must be a string")
  end)

  it("refuses a bad timeout", function()
    refuses(with(nil, function(d) d.timeout = 0 end), "timeout", "at least")
    refuses(with(nil, function(d) d.timeout = "10" end), "timeout", "must be a number")
    refuses(with(nil, function(d) d.connect_timeout = -1 end), "connect_timeout", "at least")
  end)
end)

describe("integration: parameters", function()
  it("refuses parameters that are not a table", function()
    refuses(with(nil, function(d) d.parameters = "serverName" end), "parameters", "must be a table")
  end)

  it("refuses a list entry that is not a name", function()
    refuses(with(nil, function(d) d.parameters = { "serverName", 42 } end), "parameters[2]", "parameter name")
  end)

  it("refuses bad parameter names, naming them", function()
    refuses(with(nil, function(d) d.parameters["bad-name"] = {} end), "parameters.bad-name", "letters, digits and _")
    refuses(with(nil, function(d) d.parameters = { "a b" } end), "parameters.a b", "letters, digits and _")
    refuses(with(nil, function(d) d.parameters["9lives"] = {} end), "parameters.9lives", "letters, digits and _")
  end)

  it("refuses built-in names as parameters", function()
    for _, b in ipairs({ "token", "username", "password" }) do
      refuses(with(nil, function(d) d.parameters[b] = {} end), "parameters." .. b, "built-in")
      refuses(with(nil, function(d) d.parameters = { b } end), "parameters." .. b, "built-in")
    end
  end)

  it("refuses a name declared twice", function()
    refuses(with(nil, function(d) d.parameters = { "region", "region" } end), "parameters.region", "declared twice")
    refuses(with(nil, function(d) d.parameters = { "region", region = { default = "us" } } end),
      "parameters.region", "declared twice")
  end)

  it("refuses a spec that is not a table", function()
    refuses(with(nil, function(d) d.parameters.region = "us" end), "parameters.region", "must be a table")
  end)

  it("refuses unknown fields of a parameter", function()
    refuses(with(nil, function(d) d.parameters.region = { defualt = "us" } end),
      "parameters.region.defualt", "is not a known field")
  end)

  it("refuses a non-boolean required or secret", function()
    refuses(with(nil, function(d) d.parameters.region = { required = "yes" } end),
      "parameters.region.required", "true or false")
    refuses(with(nil, function(d) d.parameters.apiKey = { secret = 1 } end),
      "parameters.apiKey.secret", "true or false")
  end)

  it("refuses a default that is neither a string nor a number", function()
    refuses(with(nil, function(d) d.parameters.region = { default = { "us" } } end),
      "parameters.region.default", "string or a number")
    refuses(with(nil, function(d) d.parameters.region = { default = true } end),
      "parameters.region.default", "string or a number")
  end)

  it("accepts a number as default", function()
    local integ = connkit.integration(with(nil, function(d) d.parameters.port = { default = 443 } end))
    assert.equal(443, integ.parameters.port.default)
  end)

  it("refuses required together with a default, without printing a secret default", function()
    local err = refuses(with(nil, function(d)
      d.parameters.apiKey = { required = true, secret = true, default = "hunter2-default" }
    end), "parameters.apiKey", "required")
    assert.matches("default", err, 1, true)
    assert.is_nil(err:find("hunter2-default", 1, true))
  end)

  it("refuses a non-string description", function()
    refuses(with(nil, function(d) d.parameters.region = { description = 3 } end),
      "parameters.region.description", "must be a string")
  end)
end)

describe("integration: placeholders", function()
  local NOT_DECLARED = "uses {bogus}, which is neither a declared parameter nor a built-in"

  it("refuses an unknown placeholder in base_url", function()
    refuses(with(nil, function(d) d.base_url = "https://{bogus}.acme.test/" end), "base_url", NOT_DECLARED)
  end)

  it("refuses an unknown placeholder in request_parameters headers and query", function()
    refuses(with(nil, function(d) d.request_parameters = { headers = { ["X-A"] = "{bogus}" } } end),
      "request_parameters.headers.X-A", NOT_DECLARED)
    refuses(with(nil, function(d) d.request_parameters = { query = { v = "x{bogus}" } } end),
      "request_parameters.query.v", NOT_DECLARED)
  end)

  it("refuses an unknown placeholder in auth_token.value", function()
    refuses(with(nil, function(d) d.auth_token = { value = "{bogus} {token}" } end), "auth_token.value", NOT_DECLARED)
  end)

  it("refuses an unknown placeholder in oauth2 URLs, scope and extra_params", function()
    refuses(with("oauth2", function(d) d.oauth2.token_url = "https://{bogus}/t" end), "oauth2.token_url", NOT_DECLARED)
    refuses(with("oauth2", function(d) d.oauth2.authorize_url = "https://x/{bogus}" end), "oauth2.authorize_url", NOT_DECLARED)
    refuses(with("oauth2", function(d) d.oauth2.revoke_url = "https://x/?a={bogus}" end), "oauth2.revoke_url", NOT_DECLARED)
    refuses(with("oauth2", function(d) d.oauth2.scope = "read {bogus}" end), "oauth2.scope", NOT_DECLARED)
    refuses(with("oauth2", function(d) d.oauth2.extra_params = { audience = "{bogus}" } end),
      "oauth2.extra_params.audience", NOT_DECLARED)
  end)

  it("refuses an unknown placeholder in custom_token.token_url", function()
    refuses(with("custom_token", function(d) d.custom_token.token_url = "https://{bogus}/login" end),
      "custom_token.token_url", NOT_DECLARED)
  end)

  it("regression: oauth2.redirect_uri is not checked as a template", function()
    -- oauth2.lua check_definition(): redirect_uri goes through check.string
    -- only, so {bogus} (and an unbalanced '{') are accepted and would be sent
    -- literally.
    refuses(with("oauth2", function(d) d.oauth2.redirect_uri = "http://127.0.0.1/{bogus}" end),
      "oauth2.redirect_uri", NOT_DECLARED)
  end)

  it("refuses a template that does not parse, naming field and position", function()
    refuses(with(nil, function(d) d.base_url = "https://{serverName.acme.test/" end),
      "base_url", "is not a valid template: unmatched '{' at position 9")
    refuses(with(nil, function(d) d.request_parameters = { headers = { ["X-A"] = "a}" } } end),
      "request_parameters.headers.X-A", "unmatched '}' at position 2")
    refuses(with(nil, function(d) d.auth_token = { value = "Bearer {}" } end),
      "auth_token.value", "empty placeholder")
    refuses(with("oauth2", function(d) d.oauth2.token_url = "https://x/{1x}" end),
      "oauth2.token_url", "bad placeholder name")
  end)

  it("refuses a base_url that is not a string", function()
    refuses(with(nil, function(d) d.base_url = { "https://x" } end), "base_url", "must be a string")
  end)
end)

describe("integration: auth_token", function()
  it("names auth_token.type for a bad type (the message of issue 2)", function()
    local err = error_of(with(nil, function(d) d.auth_token = { type = "cookie" } end))
    assert.equal([[integration 'acmecrm': auth_token.type must be "header" or "query"]], err)
  end)

  it("refuses a bad header name", function()
    refuses(with(nil, function(d) d.auth_token = { name = "X Bad" } end), "auth_token.name", "not a valid header name")
    refuses(with(nil, function(d) d.auth_token = { name = "X:Token" } end), "auth_token.name", "not a valid header name")
  end)

  it("refuses an empty name", function()
    refuses(with(nil, function(d) d.auth_token = { name = "" } end), "auth_token.name", "must not be empty")
  end)

  it("refuses a value without {token}", function()
    refuses(with(nil, function(d) d.auth_token = { value = "Bearer static" } end), "auth_token.value", "{token}")
    refuses(with(nil, function(d) d.auth_token = { value = "Bearer {{token}}" } end), "auth_token.value", "{token}")
  end)

  it("refuses unknown fields and a non-table", function()
    refuses(with(nil, function(d) d.auth_token = { prefix = "Bearer" } end), "auth_token.prefix", "is not a known field")
    refuses(with(nil, function(d) d.auth_token = "header" end), "auth_token", "must be a table")
  end)

  it("refuses auth_token with basic and none", function()
    refuses(with("basic", function(d) d.auth_token = { type = "header" } end), "auth_token", 'auth = "basic"')
    refuses(with("none", function(d) d.auth_token = {} end), "auth_token", 'auth = "none"')
  end)

  it("accepts auth_token with oauth2 and custom_token", function()
    assert.equal("X-Token", connkit.integration(with("oauth2", function(d)
      d.auth_token = { name = "X-Token", value = "{token}" } end)).auth_token.name)
    assert.equal("query", connkit.integration(with("custom_token", function(d)
      d.auth_token = { type = "query", name = "sid" } end)).auth_token.type)
  end)
end)

describe("integration: request_parameters", function()
  it("refuses a header with a bad name, naming it", function()
    refuses(with(nil, function(d) d.request_parameters = { headers = { ["X Bad"] = "1" } } end),
      "request_parameters.headers.X Bad", "not a valid header name")
    local err = error_of(with(nil, function(d) d.request_parameters = { headers = { ["X-A\r\nX-B"] = "1" } } end))
    assert.matches(PREFIX .. "request_parameters.headers.X-A", err, 1, true)
    assert.matches("not a valid header name", err, 1, true)
  end)

  it("refuses entries not named by a string", function()
    refuses(with(nil, function(d) d.request_parameters = { query = { "v" } } end),
      "request_parameters.query.1", "named by a string")
  end)

  it("refuses values that are not strings or numbers", function()
    refuses(with(nil, function(d) d.request_parameters = { query = { v = true } } end),
      "request_parameters.query.v", "must be a string")
  end)

  it("refuses unknown parts and non-tables", function()
    refuses(with(nil, function(d) d.request_parameters = { body = {} } end),
      "request_parameters.body", "is not a known field")
    refuses(with(nil, function(d) d.request_parameters = { headers = "X-A: 1" } end),
      "request_parameters.headers", "must be a table")
    refuses(with(nil, function(d) d.request_parameters = "x" end), "request_parameters", "must be a table")
  end)

  it("regression: a literal CR/LF in a header template of the definition is accepted", function()
    -- integration.lua check_request_parameters() (and check_auth_token)
    -- compile header templates without checking their literal text; the
    -- line is only refused when sent (http.c header_line_ok, err.code
    -- "header"). A definition loaded from JSON can carry one.
    refuses(with(nil, function(d) d.request_parameters = { headers = { ["X-A"] = "a\r\nX-Evil: 1" } } end),
      "request_parameters.headers.X-A", "CR")
  end)
end)

describe("integration: per-auth blocks", function()
  it("requires the block of the auth type", function()
    refuses(with("oauth2", function(d) d.oauth2 = nil end), "oauth2", "is required")
    refuses(with("custom_token", function(d) d.custom_token = nil end), "custom_token", "is required")
    refuses(with("oauth2", function(d) d.oauth2 = "x" end), "oauth2", "must be a table")
  end)

  it("refuses a block given for another auth type", function()
    refuses(with("api_token", function(d) d.oauth2 = { token_url = "https://x/t" } end), "oauth2", 'only for auth = "oauth2"')
    refuses(with("basic", function(d) d.custom_token = { token_url = "https://x/t" } end),
      "custom_token", 'only for auth = "custom_token"')
    refuses(with("oauth2", function(d) d.custom_token = { token_url = "https://x/t" } end),
      "custom_token", 'only for auth = "custom_token"')
  end)

  it("oauth2: requires token_url, and authorize_url for authorization_code", function()
    refuses(with("oauth2", function(d) d.oauth2.token_url = nil end), "oauth2.token_url", "is required")
    refuses(with("oauth2", function(d) d.oauth2.authorize_url = nil end), "oauth2.authorize_url", "is required")
    assert.truthy(connkit.integration(with("oauth2", function(d)
      d.oauth2.grant_type = "client_credentials"
      d.oauth2.authorize_url = nil
    end)))
  end)

  it("oauth2: refuses bad enumerations and types", function()
    refuses(with("oauth2", function(d) d.oauth2.grant_type = "password" end), "oauth2.grant_type", "must be")
    refuses(with("oauth2", function(d) d.oauth2.token_method = "PUT" end), "oauth2.token_method", '"POST" or "GET"')
    refuses(with("oauth2", function(d) d.oauth2.client_auth = "jwt" end), "oauth2.client_auth", "must be")
    refuses(with("oauth2", function(d) d.oauth2.pkce = "yes" end), "oauth2.pkce", "true or false")
    refuses(with("oauth2", function(d) d.oauth2.token_url = 5 end), "oauth2.token_url", "must be a string")
    refuses(with("oauth2", function(d) d.oauth2.extra_params = "a=b" end), "oauth2.extra_params", "must be a table")
  end)

  it("oauth2: refuses unknown fields", function()
    refuses(with("oauth2", function(d) d.oauth2.secret = "x" end), "oauth2.secret", "is not a known field")
  end)

  it("oauth2: pkce defaults to true for authorization_code, false for client_credentials", function()
    assert.is_true(connkit.integration(def("oauth2")).oauth2.pkce)
    assert.is_false(connkit.integration(with("oauth2", function(d)
      d.oauth2.grant_type = "client_credentials" end)).oauth2.pkce)
  end)

  it("custom_token: requires token_url", function()
    refuses(with("custom_token", function(d) d.custom_token.token_url = nil end), "custom_token.token_url", "is required")
  end)

  it("custom_token: refuses a token_path or expires_in_path that is not a dotted path", function()
    refuses(with("custom_token", function(d) d.custom_token.token_path = "data token" end),
      "custom_token.token_path", "dotted path")
    refuses(with("custom_token", function(d) d.custom_token.token_path = ".token" end),
      "custom_token.token_path", "dotted path")
    refuses(with("custom_token", function(d) d.custom_token.token_path = "" end),
      "custom_token.token_path", "must not be empty")
    refuses(with("custom_token", function(d) d.custom_token.expires_in_path = "data/ttl" end),
      "custom_token.expires_in_path", "dotted path")
  end)

  it("regression: custom_token.token_path accepts empty segments (data..token, data.)", function()
    -- custom_token.lua PATH = "^[%w_%-]+[%.%w_%-]*$" lets dots repeat and end
    -- the path; such a path can never find a token.
    refuses(with("custom_token", function(d) d.custom_token.token_path = "data..token" end),
      "custom_token.token_path", "dotted path")
    refuses(with("custom_token", function(d) d.custom_token.token_path = "data." end),
      "custom_token.token_path", "dotted path")
  end)

  it("custom_token: refuses bad ttl, method, format, header name and unknown fields", function()
    refuses(with("custom_token", function(d) d.custom_token.ttl = 0 end), "custom_token.ttl", "at least 1")
    refuses(with("custom_token", function(d) d.custom_token.ttl = "1h" end), "custom_token.ttl", "must be a number")
    refuses(with("custom_token", function(d) d.custom_token.token_method = "PATCH" end), "custom_token.token_method", "must be")
    refuses(with("custom_token", function(d) d.custom_token.format = "xml" end), "custom_token.format", "must be")
    refuses(with("custom_token", function(d) d.custom_token.headers = { ["X Y"] = "1" } end),
      "custom_token.headers.X Y", "not a valid header name")
    refuses(with("custom_token", function(d) d.custom_token.path = "x" end), "custom_token.path", "is not a known field")
  end)

  it("custom_token: placeholders in params that are not parameters become credential names", function()
    local integ = connkit.integration(with("custom_token", function(d)
      d.custom_token.params = { user = "{username}", otp = "{otp}", region = "{region}" }
    end))
    local names = integ.custom_token.credential_names
    assert.is_true(names.username)
    assert.is_true(names.otp)
    assert.is_nil(names.region)
  end)
end)

describe("integration: retry, refresh, tls", function()
  it("retry.max must be a whole number from 0 to 20", function()
    refuses(with(nil, function(d) d.retry = { max = 1.5 } end), "retry.max", "whole number")
    refuses(with(nil, function(d) d.retry = { max = -1 } end), "retry.max", "at least 0")
    refuses(with(nil, function(d) d.retry = { max = 21 } end), "retry.max", "at most 20")
    refuses(with(nil, function(d) d.retry = { max = "3" } end), "retry.max", "must be a number")
  end)

  it("retry.statuses must be HTTP status codes", function()
    refuses(with(nil, function(d) d.retry = { statuses = { 503, 99 } } end), "retry.statuses[2]", "at least 100")
    refuses(with(nil, function(d) d.retry = { statuses = { 600 } } end), "retry.statuses[1]", "at most 599")
    refuses(with(nil, function(d) d.retry = { statuses = 503 } end), "retry.statuses", "must be a table")
  end)

  it("retry refuses unknown fields and a non-table", function()
    refuses(with(nil, function(d) d.retry = { tries = 3 } end), "retry.tries", "is not a known field")
    refuses(with(nil, function(d) d.retry = true end), "retry", "must be a table")
    refuses(with(nil, function(d) d.retry = { max_wait = -1 } end), "retry.max_wait", "at least 0")
  end)

  it("refresh.window must be a number >= 0", function()
    refuses(with(nil, function(d) d.refresh = { window = "30m" } end), "refresh.window", "must be a number")
    refuses(with(nil, function(d) d.refresh = { window = -1 } end), "refresh.window", "at least 0")
  end)

  it("refresh: on_status, min_ttl, fraction and unknown fields", function()
    refuses(with(nil, function(d) d.refresh = { on_status = { "401" } } end), "refresh.on_status[1]", "must be a number")
    refuses(with(nil, function(d) d.refresh = { on_status = { a = 401 } } end), "refresh.on_status", "list of status codes")
    refuses(with(nil, function(d) d.refresh = { min_ttl = -5 } end), "refresh.min_ttl", "at least 0")
    refuses(with(nil, function(d) d.refresh = { fraction = 1 } end), "refresh.fraction", "at most 0.99")
    refuses(with(nil, function(d) d.refresh = { windw = 10 } end), "refresh.windw", "is not a known field")
    refuses(with(nil, function(d) d.refresh = 1800 end), "refresh", "must be a table")
  end)

  it("regression: a NaN number is refused with the message 'must be a number, not a number'", function()
    -- check.lua check.number(): describe(v) gives type(v), which is "number"
    -- for NaN.
    local err = refuses(with(nil, function(d) d.refresh = { window = 0 / 0 } end), "refresh.window")
    assert.is_nil(err:find("not a number$"))
  end)

  it("tls.ca_file must be a string; no other tls field (no way to turn verification off)", function()
    refuses(with(nil, function(d) d.tls = { ca_file = 5 } end), "tls.ca_file", "must be a string")
    refuses(with(nil, function(d) d.tls = { ca_file = "" } end), "tls.ca_file", "must not be empty")
    refuses(with(nil, function(d) d.tls = { verify = false } end), "tls.verify", "is not a known field")
    refuses(with(nil, function(d) d.tls = "/etc/ca.pem" end), "tls", "must be a table")
    assert.equal("/etc/ssl/ca.pem", connkit.integration(with(nil, function(d)
      d.tls = { ca_file = "/etc/ssl/ca.pem" } end)).tls.ca_file)
  end)
end)

describe("integration: sftp block", function()
  local f = io.open(helpers.root .. "/lua/connkit/sftp/init.lua", "rb")
  local loadable = f ~= nil and pcall(require, "connkit.sftp")
  if f then f:close() end
  if not loadable then
    pending("lua/connkit/sftp/init.lua is absent or does not load; sftp block not tested")
    return
  end

  local function sftp_def(patch)
    local d = def("none")
    d.auth = "sftp"
    d.base_url = nil
    d.sftp = { host = "{serverName}.files.acme.test", port = 22, host_key = "SHA256:pFhyJ7Zf3PEKabcdefghijklmnopqrstuvwxyz0123" }
    if patch then patch(d) end
    return d
  end

  it("requires the sftp block for auth = sftp and refuses it for other types", function()
    assert.equal("sftp", connkit.integration(sftp_def()).auth)
    refuses(sftp_def(function(d) d.sftp = nil end), "sftp", "is required")
    refuses(with("api_token", function(d) d.sftp = { host = "x" } end), "sftp", 'only for auth = "sftp"')
  end)

  it("names sftp fields in its errors", function()
    refuses(sftp_def(function(d) d.sftp.port = 0 end), "sftp.port")
    refuses(sftp_def(function(d) d.sftp.host = "{bogus}.x" end), "sftp.host", "{bogus}")
    refuses(sftp_def(function(d) d.sftp.colour = 1 end), "sftp.colour", "is not a known field")
    refuses(sftp_def(function(d) d.sftp.host_key = nil end), "sftp", "known_hosts")
  end)
end)

describe("integration: tostring", function()
  it("shows name, key and auth", function()
    local s = tostring(connkit.integration(def("oauth2")))
    assert.matches("Acme CRM", s, 1, true)
    assert.matches("acmecrm", s, 1, true)
    assert.matches("oauth2", s, 1, true)
    assert.matches("^connkit%.integration", s)
  end)

  it("never shows client_secret, secret parameter defaults or tokens", function()
    local integ = connkit.integration(with("oauth2", function(d)
      d.oauth2.client_secret = "cs-very-secret-9137"
      d.parameters.apiKey = { secret = true, default = "pk-very-secret-4242" }
      d.auth_token = { value = "Bearer {token} {apiKey}" }
    end))
    local s = tostring(integ)
    assert.is_nil(s:find("cs-very-secret-9137", 1, true))
    assert.is_nil(s:find("pk-very-secret-4242", 1, true))
    assert.is_nil(s:find("Bearer", 1, true))
  end)
end)

describe("connkit.load", function()
  local dir = helpers.tmpdir("integ")

  local function write(name, text)
    local path = dir .. "/" .. name
    helpers.write_file(path, text)
    return path
  end

  -- The error connkit.load(path) raises.
  local function load_error(path)
    local ok, err = pcall(connkit.load, path)
    assert.is_false(ok, "connkit.load accepted " .. tostring(path))
    return tostring(err)
  end

  local JSON = [[{
    "name": "Acme CRM", "key": "acmecrm", "auth": "api_token",
    "base_url": "https://{serverName}.acme.test/api",
    "description": null,
    "parameters": { "serverName": { "required": true }, "region": { "default": "us", "description": null } },
    "auth_token": { "type": "header", "name": "X-Api-Key", "value": "{token}" },
    "request_parameters": { "headers": { "X-Region": "{region}" }, "query": { "api_version": "2024-01" } },
    "refresh": { "window": null, "on_status": [401, 403] },
    "retry": null
  }]]

  it("reads a JSON file and validates it", function()
    local integ = connkit.load(write("acme.json", JSON))
    assert.equal("Acme CRM", integ.name)
    assert.equal("acmecrm", integ.key)
    assert.equal("api_token", integ.auth)
    assert.equal("X-Api-Key", integ.auth_token.name)
    assert.equal("us", integ.parameters.region.default)
    assert.is_true(integ.parameters.serverName.required)
    assert.equal("X-Region", integ.request_parameters.headers[1].name)
  end)

  it("strips JSON null: a null field counts as not given", function()
    local integ = connkit.load(write("nulls.json", JSON))
    assert.is_nil(integ.description)
    assert.is_nil(integ.parameters.region.description)
    assert.is_nil(integ.retry)
    assert.equal(1800, integ.refresh.window)
    assert.same({ [401] = true, [403] = true }, integ.refresh.on_status)
  end)

  it("a JSON null where a value is required is reported as missing", function()
    local path = write("nullname.json", [[{"name": null, "key": "acmecrm", "auth": "none"}]])
    assert.matches(PREFIX .. "name is required", load_error(path), 1, true)
  end)

  it("reads list-form parameters from JSON", function()
    local integ = connkit.load(write("list.json",
      [[{"name": "X", "key": "x1", "auth": "none", "parameters": ["serverName", "region"]}]]))
    assert.is_true(integ.parameters.serverName.required)
    assert.is_true(integ.parameters.region.required)
  end)

  it("reports a bad definition in a JSON file with the field named", function()
    local path = write("bad.json", [[{"name": "X", "key": "acme-crm", "auth": "none"}]])
    assert.matches("key must be letters and digits only", load_error(path), 1, true)
    path = write("bad2.json", [[{"name": "X", "key": "acmecrm", "auth": "api_token", "auth_token": {"type": "cookie"}}]])
    assert.matches(PREFIX .. "auth_token.type", load_error(path), 1, true)
    path = write("bad3.json", [[{"name": "X", "key": "acmecrm", "auth": "none", "extra": 1}]])
    assert.matches(PREFIX .. "extra is not a known field", load_error(path), 1, true)
  end)

  it("refuses a JSON file that does not parse or is not an object", function()
    assert.matches("is not a JSON object", load_error(write("broken.json", '{"name": "X",')), 1, true)
    assert.matches("is not a JSON object", load_error(write("string.json", '"just a string"')), 1, true)
  end)

  it("regression: a JSON number renders as 8080.0 in templates on Lua 5.3/5.4", function()
    -- lua-cjson decodes every number as a float on 5.3+; a numeric default
    -- then goes into URLs as "8080.0" (template.c renders with lua_tolstring).
    local integ = connkit.load(write("num.json", [[{"name": "X", "key": "x1", "auth": "none",
      "base_url": "http://127.0.0.1:{port}/", "parameters": {"port": {"default": 8080}}}]]))
    local acct = integ:account {}
    assert.equal("http://127.0.0.1:8080/", acct:fill("http://127.0.0.1:{port}/", "url"))
  end)

  it("reads a Lua file that returns the definition", function()
    local integ = connkit.load(write("acme.lua", [[
      return {
        name = "Acme CRM", key = "acmecrm", auth = "basic",
        parameters = { "serverName" },
        base_url = "https://{serverName}.acme.test/",
      }]]))
    assert.equal("basic", integ.auth)
    assert.is_true(integ.parameters.serverName.required)
  end)

  it("lets a Lua file use os.getenv and the pure libraries, and no io or os.execute", function()
    local integ = connkit.load(write("env.lua", [[
      return { name = string.upper("acme"), key = "acme1", auth = "none", description = os.getenv("HOME") or "nohome" }]]))
    assert.equal(os.getenv("HOME") or "nohome", integ.description)
    assert.equal("ACME", integ.name)
    local err = load_error(write("noexec.lua", [[
      os.execute("true") return { name = "x", key = "acme1", auth = "none" }]]))
    assert.matches("connkit.load", err, 1, true)
    assert.matches("noexec.lua", err, 1, true)
    assert.is_false((pcall(connkit.load, write("noio.lua", [[
      io.open("/tmp/x") return { name = "x", key = "acme1", auth = "none" }]]))))
  end)

  it("refuses a Lua file that returns a non-table", function()
    for i, body in ipairs({ "return 42", "return nil", "return 'acme'", "" }) do
      local err = load_error(write("nontable" .. i .. ".lua", body))
      assert.matches("must return a table", err, 1, true)
    end
  end)

  it("reports a Lua file with a syntax error or one that raises", function()
    local err = load_error(write("syntax.lua", "return { name = "))
    assert.matches("connkit.load", err, 1, true)
    assert.matches("syntax.lua", err, 1, true)
    err = load_error(write("raises.lua", "local t\nreturn t.boom"))
    assert.matches("raises.lua:2:", err, 1, true)
    assert.matches("attempt to index", err, 1, true)
  end)

  it("reports a bad definition in a Lua file with the field named", function()
    local err = load_error(write("badfield.lua",
      [[return { name = "X", key = "acmecrm", auth = "api_token", retry = { max = 100 } }]]))
    assert.matches(PREFIX .. "retry.max", err, 1, true)
  end)

  it("tells JSON from Lua by content when the name has no extension", function()
    assert.equal("none", connkit.load(write("noext1", '{"name": "X", "key": "x1", "auth": "none"}')).auth)
    assert.equal("basic", connkit.load(write("noext2", 'return { name = "X", key = "x2", auth = "basic", base_url = "https://x.test" }')).auth)
  end)

  it("refuses a missing file and a non-string path", function()
    local err = load_error(dir .. "/does-not-exist.json")
    assert.matches("cannot read", err, 1, true)
    assert.matches("does-not-exist.json", err, 1, true)
    assert.matches("path must be a string", load_error(42), 1, true)
    assert.matches("path must be a string", load_error(nil), 1, true)
  end)

  it("keeps the JSON secret out of tostring", function()
    local integ = connkit.load(write("secret.json", [[{"name": "Acme", "key": "acme3", "auth": "oauth2", "base_url": "https://x.test",
      "oauth2": {"grant_type": "client_credentials", "token_url": "https://x.test/t",
                 "client_id": "abc", "client_secret": "json-secret-5521"}}]]))
    local s = tostring(integ)
    assert.matches("acme3", s, 1, true)
    assert.is_nil(s:find("json-secret-5521", 1, true))
  end)

  teardown(function()
    helpers.run("rm -rf " .. helpers.shell_quote(dir))
  end)
end)

describe("integration: URLs need a scheme, and endpoints that carry credentials need https", function()
  -- every URL field that reaches a token, authorization, revocation, device
  -- or custom login endpoint: field name -> how to set it on a definition
  local SECURE = {
    ["oauth2.token_url"] = { "oauth2", function(d, u) d.oauth2.token_url = u end },
    ["oauth2.authorize_url"] = { "oauth2", function(d, u) d.oauth2.authorize_url = u end },
    ["oauth2.revoke_url"] = { "oauth2", function(d, u) d.oauth2.revoke_url = u end },
    ["oauth2.device_authorization_url"] = { "oauth2", function(d, u) d.oauth2.device_authorization_url = u end },
    ["custom_token.token_url"] = { "custom_token", function(d, u) d.custom_token.token_url = u end },
  }

  local function with_url(field, url, extra)
    local s = SECURE[field]
    return def(s[1], function(d)
      s[2](d, url)
      for k, v in pairs(extra or {}) do d[k] = v end
    end)
  end

  local CREDS = { api_token = { token = "t1234" }, custom_token = { username = "u", password = "p" } }
  local function account_of(d, params)
    local integ = connkit.integration(d)
    return pcall(integ.account, integ, { parameters = params or { serverName = "eu" }, credentials = CREDS[d.auth] })
  end

  it("refuses a URL without a scheme in every URL field", function()
    for field in pairs(SECURE) do
      refuses(with_url(field, "idp.acme.test/token"), field, "must be an absolute URL starting with https://")
      refuses(with_url(field, "/token"), field, "must be an absolute URL")
    end
    refuses(def(nil, function(d) d.base_url = "acme.test" end), "base_url", "must be an absolute URL")
    refuses(def(nil, function(d) d.allowed_origins = { "cdn.acme.test" } end), "allowed_origins[1]", "must be an absolute URL")
    refuses(def(nil, function(d) d.base_url = "ftp://acme.test/" end), "base_url", "not ftp://")
    -- no host: curl would take the path's first segment for one
    refuses(def(nil, function(d) d.base_url = "https:///api.acme.test/v1" end), "base_url", "must name a host")
    refuses(def(nil, function(d) d.allowed_origins = { "https://:8443" } end), "allowed_origins[1]", "must name a host")
  end)

  it("refuses http:// to a host that is not loopback in every endpoint field, naming the fix", function()
    for field in pairs(SECURE) do
      local err = refuses(with_url(field, "http://idp.acme.test/token"), field, "credentials would travel in clear")
      assert.matches("allow_insecure_http = true", err, 1, true)
      -- look-alikes of loopback names are not loopback
      for _, u in ipairs({ "http://127.0.0.1.evil.test/t", "http://localhost.evil.test/t", "http://128.0.0.1/t",
        "http://127.0.0.256/t", "http://[::2]/t", "http://evil.test#@127.0.0.1/t", "HTTP://IDP.acme.test/t" }) do
        refuses(with_url(field, u), field, "in clear")
      end
    end
  end)

  it("takes http:// to loopback hosts: 127.0.0.0/8, ::1 and localhost", function()
    for field in pairs(SECURE) do
      for _, u in ipairs({ "http://127.0.0.1:9/token", "http://127.8.9.10/t", "http://localhost:8080/t",
        "http://LOCALHOST/t", "http://[::1]:8080/t", "http://user@127.0.0.1/t", "http://127.0.0.1:{port}/t" }) do
        local d = with_url(field, u)
        d.parameters.port = { default = 8080 }
        assert.is_table(connkit.integration(d), u)
      end
      assert.is_table(connkit.integration(with_url(field, "https://idp.acme.test/t")))
    end
  end)

  it("takes any http:// endpoint with allow_insecure_http = true, and checks the flag's type", function()
    for field in pairs(SECURE) do
      assert.is_table(connkit.integration(with_url(field, "http://idp.acme.test/t", { allow_insecure_http = true })))
    end
    refuses(def(nil, function(d) d.allow_insecure_http = "yes" end), "allow_insecure_http", "must be true or false")
    -- base_url is an API, not a token endpoint: http:// is the user's choice there
    assert.is_table(connkit.integration(def(nil, function(d) d.base_url = "http://{serverName}.acme.test" end)))
  end)

  it("checks a templated http host when the account renders it", function()
    for field in pairs(SECURE) do
      local d = with_url(field, "http://{serverName}.acme.test/token")
      local ok, err = account_of(d)
      assert.is_false(ok, field)
      assert.matches(field .. " (http://eu.acme.test:80) uses http://", err, 1, true)
      d = with_url(field, "http://{idpHost}/token")
      d.parameters.idpHost = { required = true }
      for _, host in ipairs({ "127.0.0.1", "localhost:9", "[::1]" }) do
        assert.is_true((account_of(d, { serverName = "eu", idpHost = host })), field .. " " .. host)
      end
      assert.is_false((account_of(d, { serverName = "eu", idpHost = "idp.acme.test" })), field)
      d = with_url(field, "http://{serverName}.acme.test/token", { allow_insecure_http = true })
      assert.is_true((account_of(d)), field)
    end
  end)

  it("checks a URL that starts with a placeholder when the account renders it", function()
    for field in pairs(SECURE) do
      local d = with_url(field, "{idp}/token")
      d.parameters.idp = { required = true }
      assert.is_true((account_of(d, { serverName = "eu", idp = "https://idp.acme.test" })), field)
      assert.is_true((account_of(d, { serverName = "eu", idp = "http://localhost:9" })), field)
      local ok, err = account_of(d, { serverName = "eu", idp = "http://idp.acme.test" })
      assert.is_false(ok)
      assert.matches(field .. " (http://idp.acme.test:80) uses http://", err, 1, true)
      ok, err = account_of(d, { serverName = "eu", idp = "idp.acme.test" })
      assert.is_false(ok)
      assert.matches(field .. " (rendered) must be an absolute URL", err, 1, true)
    end
    -- base_url: the scheme is checked on the rendered URL
    assert.is_table(connkit.integration(def(nil, function(x) x.base_url = "{serverName}.acme.test/api" end)))
    local d = def(nil, function(x) x.base_url = "{base}/v1"; x.parameters.base = { required = true } end)
    local ok, err = account_of(d, { serverName = "eu", base = "api.acme.test" })
    assert.is_false(ok)
    assert.matches("base_url (rendered) must be an absolute URL", err, 1, true)
    assert.is_true((account_of(d, { serverName = "eu", base = "http://api.acme.test" })))
  end)
end)
