-- Accounts (API.md section 2, issue 2 item 5) without a network peer:
-- parameters (filled, defaults, unknown, missing), credentials per auth type,
-- several accounts side by side, account:fill, status() and tostring, and no
-- secret in any message. What goes over the wire is in spec/http_spec.lua.
local connkit = require "connkit"

local KEY = "acmecrm"

-- Secrets used below: none of them may show in a message or a tostring.
local TOKEN = "tok-SECRET-7f3a9c"
local PASSWORD = "pw-SECRET-51e2"
local CLIENT_SECRET = "cs-SECRET-c0ffee"
local API_KEY = "pk-SECRET-90210"

-- An integration of the given auth type; `patch(def)` changes the definition.
local function integration(auth, patch)
  local d = {
    name = "Acme CRM", key = KEY, auth = auth,
    base_url = "https://{serverName}.acme.test/api",
    parameters = {
      serverName = { required = true },
      region = { default = "us" },
      apiKey = { secret = true },
    },
  }
  if auth == "oauth2" then
    d.oauth2 = {
      token_url = "https://{serverName}.acme.test/token",
      authorize_url = "https://{serverName}.acme.test/authorize",
      client_id = "abc", client_secret = CLIENT_SECRET,
    }
  elseif auth == "custom_token" then
    d.custom_token = {
      token_url = "https://{serverName}.acme.test/login",
      params = { user = "{username}", password = "{password}", otp = "{otp}" },
    }
  end
  if patch then patch(d) end
  return connkit.integration(d)
end

-- The message of the error integ:account(opts) raises (asserts it raises).
local function account_error(integ, opts)
  local ok, err = pcall(integ.account, integ, opts)
  assert.is_false(ok, "the account was accepted")
  return tostring(err)
end

-- Asserts the error names `field` right after the subject and holds `words`.
local function refuses(integ, opts, field, words)
  local err = account_error(integ, opts)
  local subject = ("account '%s' of integration '%s': "):format(tostring(opts.id or integ.key), integ.key)
  assert.matches(subject .. (field and (field .. " ") or ""), err, 1, true)
  if words then assert.matches(words, err, 1, true) end
  for _, s in ipairs({ TOKEN, PASSWORD, CLIENT_SECRET, API_KEY }) do
    assert.is_nil(err:find(s, 1, true), "a secret is in the error: " .. err)
  end
  return err
end

local P = { serverName = "prod" }

describe("account parameters", function()
  local integ = integration("none")

  it("fills parameters from the account", function()
    local a = integ:account { parameters = { serverName = "prod", region = "eu" } }
    assert.equal("prod", a:fill("{serverName}"))
    assert.equal("eu", a:fill("{region}"))
  end)

  it("applies defaults for parameters not given", function()
    local a = integ:account { parameters = P }
    assert.equal("us", a:fill("{region}"))
  end)

  it("takes numbers as parameter values", function()
    local a = integ:account { parameters = { serverName = 42 } }
    assert.equal("https://42.acme.test/api", a:fill("https://{serverName}.acme.test/api", "url"))
  end)

  it("names a missing required parameter", function()
    local err = refuses(integ, {}, nil, "missing required parameters: serverName")
    assert.is_nil(err:find("region", 1, true))
    refuses(integ, { parameters = { region = "eu" } }, nil, "missing required parameters: serverName")
  end)

  it("names every missing required parameter, sorted", function()
    local i2 = integration("none", function(d) d.parameters = { "zeta", "alpha", "mid" }; d.base_url = nil end)
    refuses(i2, {}, nil, "missing required parameters: alpha, mid, zeta")
  end)

  it("names an unknown parameter", function()
    refuses(integ, { parameters = { serverName = "prod", servername = "x" } },
      "parameters.servername", "is not a parameter of this integration")
  end)

  it("refuses a parameter value that is not a string or a number", function()
    refuses(integ, { parameters = { serverName = { "prod" } } }, "parameters.serverName", "string or a number")
    refuses(integ, { parameters = { serverName = true } }, "parameters.serverName", "string or a number")
  end)

  it("refuses parameters that are not a table", function()
    refuses(integ, { parameters = "prod" }, "parameters", "must be a table")
  end)

  it("refuses a parameter value the base_url cannot hold, naming base_url and not the value", function()
    local err = refuses(integ, { parameters = { serverName = "evil.test/x" } }, "base_url", "cannot be filled")
    assert.is_nil(err:find("evil.test", 1, true))
    local i2 = integration("none", function(d) d.base_url = "https://{apiKey}.acme.test/" end)
    refuses(i2, { parameters = { serverName = "p", apiKey = API_KEY .. "/x" } }, "base_url", "{apiKey}")
  end)

  it("refuses a request_parameters header value with CR/LF, naming the header", function()
    local i2 = integration("none", function(d) d.request_parameters = { headers = { ["X-Region"] = "{region}" } } end)
    refuses(i2, { parameters = { serverName = "p", region = "eu\r\nX-Evil: 1" } },
      "request_parameters.headers.X-Region", "cannot be filled")
  end)

  it("renders a secret parameter but never prints it", function()
    local a = integration("none"):account { parameters = { serverName = "p", apiKey = API_KEY } }
    assert.equal(API_KEY, a:fill("{apiKey}"))
    assert.is_nil(tostring(a):find(API_KEY, 1, true))
  end)
end)

describe("account options", function()
  local integ = integration("none")

  it("takes its id from the key by default", function()
    assert.equal(KEY, integ:account({ parameters = P }).id)
    assert.equal("prod", integ:account({ id = "prod", parameters = P }).id)
  end)

  it("refuses a non-string id", function()
    local err = account_error(integ, { id = 5, parameters = P })
    assert.matches("id must be a string", err, 1, true)
  end)

  it("refuses unknown options, by name", function()
    refuses(integ, { parameters = P, params = {} }, "params", "is not a known field")
    refuses(integ, { parameters = P, token = TOKEN }, "token", "is not a known field")
  end)

  it("refuses options that are not a table and a call without self", function()
    assert.matches("must be a table", account_error(integ, "prod"), 1, true)
    local ok, err = pcall(integ.account, {}, { parameters = P })
    assert.is_false(ok)
    assert.matches("integration:account", tostring(err), 1, true)
  end)

  it("checks on_token, store and timeout", function()
    refuses(integ, { parameters = P, on_token = "print" }, "on_token", "must be a function")
    refuses(integ, { parameters = P, store = "memory" }, "store", "must be a store table")
    refuses(integ, { parameters = P, store = { get = print, put = print } }, "store", "lock()")
    refuses(integ, { parameters = P, timeout = 0 }, "timeout", "at least")
    refuses(integ, { parameters = P, tls = { verify = false } }, "tls.verify", "is not a known field")
    local a = integ:account { parameters = P, on_token = function() end, store = connkit.store.memory(), timeout = 5 }
    assert.equal(5, a._timeout)
  end)
end)

describe("account credentials", function()
  it("api_token: takes a token and names a missing one", function()
    local integ = integration("api_token")
    local a = integ:account { parameters = P, credentials = { token = TOKEN } }
    assert.equal(TOKEN, a:token())
    refuses(integ, { parameters = P }, nil, "missing credentials: token")
    refuses(integ, { parameters = P, credentials = {} }, nil, "missing credentials: token")
  end)

  it("api_token: names unknown credentials", function()
    local integ = integration("api_token")
    refuses(integ, { parameters = P, credentials = { token = TOKEN, password = PASSWORD } },
      "credentials.password", 'is not used by auth = "api_token"')
    refuses(integ, { parameters = P, credentials = { api_key = TOKEN } },
      "credentials.api_key", 'is not used by auth = "api_token"')
  end)

  it("api_token: refuses a token holding CR, LF or NUL without printing it", function()
    local integ = integration("api_token")
    for _, bad in ipairs({ TOKEN .. "\r\nX-Evil: 1", TOKEN .. "\n", TOKEN .. "\0" }) do
      refuses(integ, { parameters = P, credentials = { token = bad } }, "credentials.token", "CR, LF or NUL")
    end
  end)

  it("api_token: a query token may hold any bytes (it is percent-encoded)", function()
    local integ = integration("api_token", function(d) d.auth_token = { type = "query", name = "key" } end)
    local a = integ:account { parameters = P, credentials = { token = "a b&c" } }
    assert.equal("a b&c", a:token())
  end)

  it("basic: takes username and password and names missing ones", function()
    local integ = integration("basic")
    local a = integ:account { parameters = P, credentials = { username = "u", password = PASSWORD } }
    assert.equal("u", a.credentials.username)
    refuses(integ, { parameters = P, credentials = { username = "u" } }, nil, "missing credentials: password")
    refuses(integ, { parameters = P, credentials = { password = PASSWORD } }, nil, "missing credentials: username")
    refuses(integ, { parameters = P }, nil, "missing credentials: password, username")
  end)

  it("basic: names unknown credentials and refuses ':' in the user name", function()
    local integ = integration("basic")
    refuses(integ, { parameters = P, credentials = { username = "u", password = PASSWORD, token = TOKEN } },
      "credentials.token", 'is not used by auth = "basic"')
    refuses(integ, { parameters = P, credentials = { username = "a:b", password = PASSWORD } },
      "credentials.username", "':'")
  end)

  it("basic: fills {username} and {password} into templates", function()
    local a = integration("basic"):account { parameters = P, credentials = { username = "u1", password = PASSWORD } }
    assert.equal("u1", a:fill("{username}"))
  end)

  it("none: takes no credentials and names any given", function()
    local integ = integration("none")
    assert.truthy(integ:account { parameters = P })
    assert.truthy(integ:account { parameters = P, credentials = {} })
    refuses(integ, { parameters = P, credentials = { token = TOKEN } }, "credentials.token", 'is not used by auth = "none"')
    refuses(integ, { parameters = P, credentials = { username = "u" } }, "credentials.username", 'is not used by auth = "none"')
  end)

  it("refuses credentials that are not a table and values that are not strings", function()
    local integ = integration("api_token")
    refuses(integ, { parameters = P, credentials = TOKEN }, "credentials", "must be a table")
    refuses(integ, { parameters = P, credentials = { token = { TOKEN } } }, "credentials.token", "must be a string")
  end)

  it("custom_token: requires the credentials its params name", function()
    local integ = integration("custom_token")
    local a = integ:account { parameters = P, credentials = { username = "u", password = PASSWORD, otp = "123456" } }
    assert.equal("123456", a.credentials.otp)
    refuses(integ, { parameters = P, credentials = { username = "u" } }, nil, "missing credentials: otp, password")
    refuses(integ, { parameters = P }, nil, "missing credentials: otp, password, username")
  end)

  it("custom_token: names unknown credentials", function()
    local integ = integration("custom_token")
    refuses(integ, { parameters = P, credentials = { username = "u", password = PASSWORD, otp = "1", token = TOKEN } },
      "credentials.token", 'is not used by auth = "custom_token"')
  end)

  it("oauth2: credentials are optional; client_id and client_secret may override", function()
    local integ = integration("oauth2")
    assert.truthy(integ:account { parameters = P })
    local a = integ:account { parameters = P, credentials = { client_id = "other", client_secret = CLIENT_SECRET } }
    assert.equal("other", a.credentials.client_id)
  end)

  it("oauth2: names unknown credentials", function()
    local integ = integration("oauth2")
    refuses(integ, { parameters = P, credentials = { password = PASSWORD } }, "credentials.password", 'is not used by auth = "oauth2"')
    refuses(integ, { parameters = P, credentials = { clientSecret = CLIENT_SECRET } }, "credentials.clientSecret")
  end)
end)

describe("accounts side by side", function()
  local integ = integration("api_token", function(d)
    d.request_parameters = { headers = { ["X-Region"] = "{region}" }, query = { srv = "{serverName}" } }
  end)
  local envs = {
    { id = "dev", server = "dev", region = "eu", token = "tok-dev-1111" },
    { id = "qa", server = "qa", region = nil, token = "tok-qa-2222" },
    { id = "prod", server = "prod", region = "ap", token = "tok-prod-3333" },
  }

  local function make()
    local out = {}
    for i, e in ipairs(envs) do
      out[i] = integ:account { id = e.id, parameters = { serverName = e.server, region = e.region },
        credentials = { token = e.token } }
    end
    return out
  end

  it("each keeps its own id, parameters and token", function()
    local accts = make()
    for i, e in ipairs(envs) do
      local a = accts[i]
      assert.equal(e.id, a.id)
      assert.equal(e.server, a:fill("{serverName}"))
      assert.equal(e.region or "us", a:fill("{region}"))
      assert.equal(e.token, a:token())
      assert.equal(integ, a.integration)
    end
  end)

  it("each prepares requests with its own URL, header and token", function()
    local accts = make()
    for i, e in ipairs(envs) do
      local req = assert(accts[i]:prepare { url = "/contacts" })
      assert.equal(("https://%s.acme.test/api/contacts?srv=%s"):format(e.server, e.server), req.url)
      assert.equal("Bearer " .. e.token, req.headers.Authorization)
      assert.equal(e.region or "us", req.headers["X-Region"])
    end
  end)

  it("creating a later account leaves the earlier ones unchanged", function()
    local dev = integ:account { id = "dev", parameters = { serverName = "dev" }, credentials = { token = "tok-dev-1111" } }
    local before = assert(dev:prepare { url = "/x" })
    local _ = integ:account { id = "prod", parameters = { serverName = "prod", region = "ap" }, credentials = { token = "tok-prod-3333" } }
    local after = assert(dev:prepare { url = "/x" })
    assert.equal(before.url, after.url)
    assert.same(before.headers, after.headers)
    assert.equal("Bearer tok-dev-1111", after.headers.Authorization)
  end)

  it("does not share the parameters table given to it", function()
    local params = { serverName = "dev" }
    local a = integ:account { parameters = params, credentials = { token = "tok-dev-1111" } }
    params.serverName = "changed"
    assert.equal("dev", a:fill("{serverName}"))
  end)

  it("two integrations of the same shape keep their own definitions", function()
    local other = integration("api_token", function(d)
      d.key = "other1"
      d.base_url = "https://{serverName}.other.test/v2"
    end)
    local a = integ:account { parameters = { serverName = "s" }, credentials = { token = "tok-a-1234" } }
    local b = other:account { parameters = { serverName = "s" }, credentials = { token = "tok-b-5678" } }
    assert.equal("https://s.acme.test/api/x?srv=s", assert(a:prepare { url = "/x" }).url)
    assert.equal("https://s.other.test/v2/x", assert(b:prepare { url = "/x" }).url)
  end)
end)

describe("account:fill", function()
  local integ = integration("none")
  local a = integ:account { parameters = { serverName = "prod", region = "a b/c?d&e=f#g%" } }

  it("renders raw by default", function()
    assert.equal("prod/a b/c?d&e=f#g%", a:fill("{serverName}/{region}"))
    assert.equal("prod/a b/c?d&e=f#g%", a:fill("{serverName}/{region}", "raw"))
  end)

  it("percent-encodes for path, query and form", function()
    assert.equal("a%20b%2Fc%3Fd%26e%3Df%23g%25", a:fill("{region}", "path"))
    assert.equal("a%20b%2Fc%3Fd%26e%3Df%23g%25", a:fill("{region}", "query"))
    assert.equal("a+b%2Fc%3Fd%26e%3Df%23g%25", a:fill("{region}", "form"))
  end)

  it("gives each placeholder of a url its place", function()
    assert.equal("https://prod.acme.test/x/a%20b%2Fc%3Fd%26e%3Df%23g%25?r=a%20b%2Fc%3Fd%26e%3Df%23g%25",
      a:fill("https://{serverName}.acme.test/x/{region}?r={region}", "url"))
  end)

  it("returns nil and a template error for a value a place cannot hold", function()
    local s, err = a:fill("https://{region}.acme.test/", "url")
    assert.is_nil(s)
    assert.equal("template", err.code)
    assert.matches("{region}", err.message, 1, true)
    assert.matches("host", err.message, 1, true)
    assert.equal(err.message, tostring(err))
  end)

  it("refuses CR/LF for a header and says so", function()
    local b = integ:account { parameters = { serverName = "p", region = "x\r\ny" } }
    local s, err = b:fill("{region}", "header")
    assert.is_nil(s)
    assert.equal("template", err.code)
    assert.matches("header", err.message, 1, true)
    assert.matches("CR, LF", err.message, 1, true)
    assert.equal("x\r\ny", b:fill("{region}", "raw"))
  end)

  it("names a placeholder it has no value for", function()
    local s, err = a:fill("/x/{nothing}", "url")
    assert.is_nil(s)
    assert.equal("template", err.code)
    assert.matches("{nothing}", err.message, 1, true)
  end)

  it("reports a template that does not parse", function()
    local s, err = a:fill("/x/{", "url")
    assert.is_nil(s)
    assert.equal("template", err.code)
    assert.matches("does not parse", err.message, 1, true)
    assert.matches("position 4", err.message, 1, true)
  end)

  it("request parameters and a query token are percent-encoded exactly once", function()
    local i2 = integration("api_token", function(d)
      d.auth_token = { type = "query", name = "key" }
      d.request_parameters = { query = { r = "{region}" }, headers = { ["X-Region"] = "{region}" } }
    end)
    local b = i2:account { parameters = { serverName = "p", region = "x%20y&z" }, credentials = { token = "t%2Fk n" } }
    local req = assert(b:prepare { url = "/items/{id}", vars = { id = "%41" } })
    assert.equal("https://p.acme.test/api/items/%2541?r=x%2520y%26z&key=t%252Fk%20n", req.url)
    assert.equal("x%20y&z", req.headers["X-Region"])
  end)

  it("takes extra values that come before the parameters", function()
    assert.equal("prod/7", a:fill("{serverName}/{id}", "raw", { id = 7 }))
    assert.equal("dev", a:fill("{serverName}", "raw", { serverName = "dev" }))
    assert.equal("prod", a:fill("{serverName}"))
  end)

  it("takes a compiled template", function()
    local tpl = require("connkit.core").template("{serverName}-{region}", "path")
    assert.equal("prod-a%20b%2Fc%3Fd%26e%3Df%23g%25", a:fill(tpl))
  end)

  it("renders the same string again after a different context", function()
    assert.equal("a%20b%2Fc%3Fd%26e%3Df%23g%25", a:fill("{region}", "path"))
    assert.equal("a b/c?d&e=f#g%", a:fill("{region}", "raw"))
    assert.equal("a%20b%2Fc%3Fd%26e%3Df%23g%25", a:fill("{region}", "path"))
  end)

  it("refuses an unknown context as a programming error", function()
    assert.is_false((pcall(a.fill, a, "{region}", "cookie")))
  end)
end)

describe("account status()", function()
  it("static auth types are authorized and show no secret", function()
    local cases = {
      { "api_token", { token = TOKEN } },
      { "basic", { username = "u", password = PASSWORD } },
      { "none", nil },
    }
    for _, c in ipairs(cases) do
      local st = integration(c[1]):account({ parameters = P, credentials = c[2] }):status()
      assert.is_true(st.authorized)
      assert.equal(c[1], st.auth)
      for _, v in pairs(st) do
        assert.is_nil(tostring(v):find("SECRET", 1, true))
      end
    end
  end)

  it("token auth types are not authorized before a token is fetched", function()
    local st = integration("oauth2"):account({ parameters = P }):status()
    assert.is_false(st.authorized)
    assert.equal("oauth2", st.auth)
    assert.is_nil(st.expires_in)
    st = integration("custom_token"):account({ parameters = P,
      credentials = { username = "u", password = PASSWORD, otp = "1" } }):status()
    assert.is_false(st.authorized)
  end)

  it("token() has no token for none", function()
    local tok, err = integration("none"):account({ parameters = P }):token()
    assert.is_nil(tok)
    assert.equal("no_token", err.code)
  end)
end)

describe("account tostring", function()
  it("shows id, integration key and auth", function()
    local s = tostring(integration("api_token"):account { id = "prod", parameters = P, credentials = { token = TOKEN } })
    assert.matches("prod", s, 1, true)
    assert.matches(KEY, s, 1, true)
    assert.matches("api_token", s, 1, true)
  end)

  it("never shows a secret of any auth type", function()
    local accts = {
      integration("api_token"):account { parameters = { serverName = "p", apiKey = API_KEY }, credentials = { token = TOKEN } },
      integration("basic"):account { parameters = { serverName = "p", apiKey = API_KEY },
        credentials = { username = "u", password = PASSWORD } },
      integration("oauth2"):account { parameters = { serverName = "p", apiKey = API_KEY },
        credentials = { client_secret = CLIENT_SECRET } },
      integration("custom_token"):account { parameters = { serverName = "p", apiKey = API_KEY },
        credentials = { username = "u", password = PASSWORD, otp = "1" } },
    }
    for _, a in ipairs(accts) do
      local s = tostring(a)
      for _, secret in ipairs({ TOKEN, PASSWORD, CLIENT_SECRET, API_KEY, "SECRET" }) do
        assert.is_nil(s:find(secret, 1, true), "tostring shows a secret: " .. s)
      end
    end
  end)

  it("a prepared request's tostring hides a secret parameter in the URL", function()
    local integ = integration("none", function(d)
      d.base_url = "https://x.test/{pin}/"
      d.parameters = { pin = { secret = true, required = true } }
    end)
    local s = tostring(assert(integ:account({ parameters = { pin = "918273" } }):prepare { url = "y" }))
    assert.matches("https://x.test/", s, 1, true)
    assert.is_nil(s:find("918273", 1, true))
  end)

  it("regression: a secret parameter given as a number is not redacted", function()
    -- account.lua Account:_add_secret() (line ~101) returns early unless the
    -- value is a string; line ~219 passes self._values[name] as given, so a
    -- numeric secret (a PIN, a numeric API key, a numeric default) is never
    -- scrubbed from tostring(req) or from engine error messages.
    local integ = integration("none", function(d)
      d.base_url = "https://x.test/{pin}/"
      d.parameters = { pin = { secret = true, required = true } }
    end)
    local s = tostring(assert(integ:account({ parameters = { pin = 918273 } }):prepare { url = "y" }))
    assert.is_nil(s:find("918273", 1, true))
  end)

  it("a prepared request's tostring hides the token and the Basic credentials", function()
    local a = integration("api_token"):account { parameters = P, credentials = { token = TOKEN } }
    local s = tostring(assert(a:prepare { url = "/x" }))
    assert.matches("https://prod.acme.test/api/x", s, 1, true)
    assert.is_nil(s:find(TOKEN, 1, true))
    local b = integration("basic"):account { parameters = P, credentials = { username = "u", password = PASSWORD } }
    s = tostring(assert(b:prepare { url = "/x" }))
    assert.is_nil(s:find(PASSWORD, 1, true))
    assert.is_nil(s:find(require("connkit.core").b64encode("u:" .. PASSWORD), 1, true))
  end)
end)

describe("oauth2 accounts without a client secret", function()
  it("are refused when the client authenticates with one, naming the field", function()
    local connkit = require "connkit"
    local integ = connkit.integration {
      name = "S", key = "nosecret", auth = "oauth2", base_url = "https://idp.test",
      oauth2 = { grant_type = "client_credentials", token_url = "https://idp.test/token", client_id = "abc" },
    }
    local ok, err = pcall(integ.account, integ, {})
    assert.is_false(ok)
    assert.matches("credentials.client_secret is required", err, 1, true)
    assert.is_table(integ:account { credentials = { client_secret = "from-the-account" } })
  end)
end)
