-- The origin rule: the account's token, its auth query parameter and the
-- request parameters go only to base_url's origin and the allowed_origins
-- (or anywhere with auth = true). Two peers on different ports are two
-- origins: httpbin is the API, nginx the "other host"; every assertion is on
-- what nginx (or httpbin) received.
local helpers = require "helpers"
local connkit = require "connkit"
local urls = require "connkit.http.url"

-- nginx's /echo reply: the raw request line, then name=value lines
local function echo_lines(body)
  local t = {}
  t.request = body:match("^([^\n]*)")
  for k, v in body:gmatch("\n([%w%-]+)=([^\n]*)") do t[k] = v end
  return t
end

local function raises(pattern, f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.matches(pattern, tostring(err), 1, true)
  return err
end

describe("the origin rule", function()
  local hb, ng

  setup(function()
    hb = helpers.peer("httpbin")
    ng = helpers.peer("nginx")
  end)

  -- an api_token account at httpbin with a request parameter header and query
  local function account(extra, token_type)
    local def = {
      name = "Acme", key = "acme", auth = "api_token", base_url = hb.url,
      parameters = { ngPort = { default = ng.port } },
      request_parameters = { headers = { ["X-Region"] = "eu" }, query = { api_version = "7" } },
    }
    if token_type == "query" then def.auth_token = { type = "query", name = "api_key" } end
    for k, v in pairs(extra or {}) do def[k] = v end
    return connkit.integration(def):account { credentials = { token = "tok-origin-1" } }
  end

  it("sends the token and request parameters to base_url's origin, relative or absolute", function()
    local acct = account()
    for _, url in ipairs({ "/anything/a", hb.url .. "/anything/b" }) do
      local got = assert(acct:get(url)):json()
      assert.equal("Bearer tok-origin-1", got.headers.Authorization)
      assert.equal("eu", got.headers["X-Region"])
      assert.equal("7", got.args.api_version)
    end
  end)

  it("sends neither the token header nor the request parameters to another origin", function()
    local acct = account()
    for _ = 1, 2 do -- the second time from the account's cache of URLs
      local res = assert(acct:get(ng.url .. "/echo/other?x=1"))
      local e = echo_lines(res.body)
      assert.equal("GET /echo/other?x=1", e.request)
      assert.equal("", e.authorization)
      assert.equal("", e["x-region"])
    end
    -- and the account still authenticates at its own origin afterwards
    assert.equal("Bearer tok-origin-1", assert(acct:get("/headers")):json().headers.Authorization)
  end)

  it("does not add the auth query parameter for another origin", function()
    local acct = account(nil, "query")
    local e = echo_lines(assert(acct:get(ng.url .. "/echo/q")).body)
    assert.equal("GET /echo/q", e.request)
    local got = assert(acct:get("/anything")):json()
    assert.equal("tok-origin-1", got.args.api_key)
  end)

  it("judges a URL made from vars (a next link from a reply) by its rendered origin", function()
    local acct = account(nil, "query")
    local e = echo_lines(assert(acct:get("{next}", { vars = { next = ng.url .. "/echo/page2" } })).body)
    assert.equal("GET /echo/page2", e.request)
    assert.equal("", e.authorization)
    local got = assert(acct:get("{next}", { vars = { next = hb.url .. "/anything/page2" } })):json()
    assert.equal("tok-origin-1", got.args.api_key)
  end)

  it("sends everything to another origin when the request says auth = true", function()
    local acct = account(nil, "query")
    local e = echo_lines(assert(acct:get(ng.url .. "/echo/yes", { auth = true })).body)
    assert.equal("GET /echo/yes?api_version=7&api_key=tok-origin-1", e.request)
    assert.equal("eu", e["x-region"])
    acct = account()
    e = echo_lines(assert(acct:request { url = ng.url .. "/echo/yes", auth = true }).body)
    assert.equal("Bearer tok-origin-1", e.authorization)
    -- a prepared request keeps its choice
    local req = assert(acct:prepare { url = ng.url .. "/echo/prep", auth = true })
    assert.equal("Bearer tok-origin-1", echo_lines(assert(req:send()).body).authorization)
  end)

  it("sends nothing, even to its own origin, when the request says auth = false", function()
    local got = assert(account(nil, "query"):get("/anything", { auth = false })):json()
    assert.is_nil(got.headers.Authorization)
    assert.is_nil(got.headers["X-Region"])
    assert.is_nil(got.args.api_key)
    assert.is_nil(got.args.api_version)
  end)

  it("refuses an auth option that is not a boolean", function()
    raises("option 'auth' must be true or false", account().get, account(), "/get", { auth = "yes" })
  end)

  it("sends everything to an allowed origin, written out or templated", function()
    for _, allowed in ipairs({ ng.url, "http://127.0.0.1:{ngPort}", "HTTP://127.0.0.1:{ngPort}/" }) do
      local acct = account({ allowed_origins = { allowed } }, "query")
      local e = echo_lines(assert(acct:get(ng.url .. "/echo/allowed")).body)
      assert.equal("GET /echo/allowed?api_version=7&api_key=tok-origin-1", e.request)
      assert.equal("eu", e["x-region"])
    end
    -- the https port of the same nginx is another origin
    local acct = account({ allowed_origins = { ng.url }, tls = { ca_file = ng.ca_file } })
    local e = echo_lines(assert(acct:get(ng.https_url .. "/echo/tls")).body)
    assert.equal("", e.authorization)
  end)

  it("lets allowed_origins stand in for base_url", function()
    local acct = connkit.integration {
      name = "Cdn", key = "cdn", auth = "basic", allowed_origins = { ng.url },
    }:account { credentials = { username = "u", password = "p-origin" } }
    local e = echo_lines(assert(acct:get(ng.url .. "/echo/basic")).body)
    assert.equal("Basic " .. require("connkit.core").b64encode("u:p-origin"), e.authorization)
    local got = assert(acct:get(hb.url .. "/headers")):json()
    assert.is_nil(got.headers.Authorization)
  end)

  it("keeps all() and start() to the same rule", function()
    local acct = account()
    local foreign = assert(acct:prepare { url = ng.url .. "/echo/all" })
    local own = assert(acct:prepare { url = "/headers" })
    local out = connkit.all { foreign, own }
    assert.equal("", echo_lines(out[1].res.body).authorization)
    assert.equal("Bearer tok-origin-1", out[2].res:json().headers.Authorization)
    local h = assert(acct:prepare { url = ng.url .. "/echo/start" }):start()
    while not h:done() do connkit.poll(0.05) end
    assert.equal("", echo_lines(assert(h:result()).body).authorization)
  end)

  it("compares origins normalized: scheme and host case, default ports", function()
    assert.equal("https://api.acme.test:443", urls.origin("HTTPS://API.Acme.Test/x"))
    assert.equal("https://api.acme.test:443", urls.origin("https://api.acme.test:443/"))
    assert.equal("http://api.acme.test:80", urls.origin("http://api.acme.test?x"))
    assert.equal("http://evil.test:80", urls.origin("http://api.acme.test@evil.test/"))
    assert.equal("http://evil.test:80", urls.origin("http://evil.test#@api.acme.test/"))
    -- no host, no origin (curl would connect to a.example and b.example)
    assert.is_nil(urls.origin("https:///a.example/x"))
    assert.is_nil(urls.origin("https://user@:443/x"))
    assert.equal("https://h:443", urls.origin("https://h:/x"))
    -- a base_url written in capitals still names the peer's origin
    local acct = account { base_url = hb.url:gsub("^http", "HTTP") }
    assert.equal("Bearer tok-origin-1", assert(acct:get(hb.url .. "/headers")):json().headers.Authorization)
  end)
end)

describe("a token account and the origin rule", function()
  local hb, ng

  setup(function()
    hb = helpers.peer("httpbin")
    ng = helpers.peer("nginx")
  end)

  -- custom_token whose endpoint is httpbin's /anything (it echoes the JSON
  -- body, so the token is json.token); the API is nginx
  local function account(on_token)
    return connkit.integration {
      name = "Ct", key = "ct", auth = "custom_token", base_url = ng.url,
      custom_token = { token_url = hb.url .. "/anything/token", format = "json",
        params = { token = "{secret}" }, token_path = "json.token" },
    }:account { credentials = { secret = "ct-token-77" }, on_token = on_token }
  end

  it("fetches its token from a token endpoint at an origin it does not name", function()
    local acct = account()
    local e = echo_lines(assert(acct:get("/echo/api")).body)
    assert.equal("Bearer ct-token-77", e.authorization)
  end)

  it("does not send the token to the token endpoint's origin as an API request", function()
    local acct = account()
    assert(acct:token())
    local got = assert(acct:get(hb.url .. "/headers")):json()
    assert.is_nil(got.headers.Authorization)
  end)

  it("fetches no token for a request that will not carry it", function()
    local fetched = 0
    local acct = account(function() fetched = fetched + 1 end)
    -- (localhost is another origin than base_url's 127.0.0.1)
    local e = echo_lines(assert(acct:get("http://localhost:" .. ng.port .. "/echo/x")).body)
    assert.equal("", e.authorization)
    assert.equal(0, fetched)
  end)

  it("does not refresh its token on a 401 from an origin it sent no token to", function()
    local fetched = 0
    local acct = account(function() fetched = fetched + 1 end)
    -- follow = true takes the full path (token brought up to date, then the
    -- on_status check); httpbin is the token endpoint's origin, not the API's
    local res = assert(acct:get(hb.url .. "/status/401", { follow = true }))
    assert.equal(401, res.status)
    assert.is_true(fetched <= 1, "the 401 of another origin made the account refresh")
    assert.equal(1, res.attempts)
  end)
end)

describe("definitions and the origin rule", function()
  local function def(extra)
    local d = { name = "X", key = "x", auth = "api_token" }
    for k, v in pairs(extra) do d[k] = v end
    return d
  end

  it("refuses an integration that attaches credentials but names no origin, saying how to fix it", function()
    for _, auth in ipairs({ "api_token", "basic" }) do
      local err = raises("set base_url or allowed_origins", connkit.integration, def { auth = auth })
      assert.matches(('auth = "%s" attaches credentials'):format(auth), err, 1, true)
    end
    raises("set base_url or allowed_origins", connkit.integration, def {
      auth = "oauth2", oauth2 = { grant_type = "client_credentials", token_url = "https://idp.test/t" } })
    raises("set base_url or allowed_origins", connkit.integration, def {
      auth = "custom_token", custom_token = { token_url = "https://idp.test/t" } })
    raises("request_parameters are attached to every request", connkit.integration,
      def { auth = "none", request_parameters = { headers = { ["X-Key"] = "k" } } })
    raises("set base_url or allowed_origins", connkit.integration,
      def { auth = "none", request_parameters = { query = { key = "k" } } })
    -- nothing to protect: fine without an origin
    assert.is_table(connkit.integration(def { auth = "none" }))
  end)

  it("checks allowed_origins: a list of origins, no path, query or user name", function()
    local function refused(list, pattern)
      raises(pattern, connkit.integration, def { base_url = "https://api.test", allowed_origins = list })
    end
    refused("https://cdn.test", "allowed_origins must be a table")
    refused({ cdn = "https://cdn.test" }, "allowed_origins must be a list of origins")
    refused({ "https://cdn.test/files" }, "allowed_origins[1] must be an origin")
    refused({ "https://ok.test", "https://cdn.test?x=1" }, "allowed_origins[2] must be an origin")
    refused({ "https://user@cdn.test" }, "allowed_origins[1] must be an origin")
    refused({ "cdn.test" }, "allowed_origins[1] must be an absolute URL")
    refused({ 42 }, "allowed_origins[1] must be a string")
    refused({ "https://{nope}.cdn.test" }, "allowed_origins[1] uses {nope}")
    assert.is_table(connkit.integration(def { allowed_origins = { "https://cdn.test/", "http://127.0.0.1:8080" } }))
  end)

  it("checks an allowed origin whose placeholder hides its shape when the account renders it", function()
    local integ = connkit.integration(def { base_url = "https://api.test", parameters = { "cdn" },
      allowed_origins = { "{cdn}" } })
    assert.is_table(integ:account { parameters = { cdn = "https://cdn.test" }, credentials = { token = "t1234" } })
    raises("allowed_origins[1] (https://cdn.test:443) must be an origin", integ.account, integ,
      { parameters = { cdn = "https://cdn.test/path" }, credentials = { token = "t1234" } })
  end)
end)
