-- HTTP requests with static auth, asserted on what the peer received:
-- httpbin (decoded view) and nginx (the raw request target).
local helpers = require "helpers"
local connkit = require "connkit"
local socket = require "socket"

local function echo_lines(body)
  local t = {}
  t.request = body:match("^([^\n]*)")
  for k, v in body:gmatch("\n([%w%-]+)=([^\n]*)") do t[k] = v end
  return t
end

describe("requests with an api_token account", function()
  local hb, ng

  local function crm(extra)
    local def = {
      name = "Acme CRM", key = "acmecrm", auth = "api_token",
      base_url = "{base}",
      parameters = { base = { required = true }, region = { default = "us" } },
      request_parameters = { headers = { ["X-Region"] = "{region}" }, query = { api_version = "2024-01" } },
    }
    for k, v in pairs(extra or {}) do def[k] = v end
    return connkit.integration(def)
  end

  setup(function()
    hb = helpers.peer("httpbin")
    ng = helpers.peer("nginx")
  end)

  it("sends the token in the header exactly as templated", function()
    local acct = crm():account { parameters = { base = hb.url }, credentials = { token = "tok-123" } }
    local res = assert(acct:get("/headers"))
    assert.equal(200, res.status)
    local got = res:json().headers
    assert.equal("Bearer tok-123", got.Authorization)
    assert.equal("us", got["X-Region"])
  end)

  it("uses a custom header name and value template", function()
    local integ = crm { auth_token = { type = "header", name = "X-Api-Key", value = "Key {token}" } }
    local acct = integ:account { parameters = { base = hb.url }, credentials = { token = "abc" } }
    local got = assert(acct:get("/headers")):json().headers
    assert.equal("Key abc", got["X-Api-Key"])
    assert.is_nil(got.Authorization)
  end)

  it("sends the token as a query parameter, encoded once", function()
    local integ = crm { auth_token = { type = "query", name = "api_key", value = "{token}" } }
    local acct = integ:account { parameters = { base = ng.url }, credentials = { token = "a+b/c=d&e" } }
    local e = echo_lines(assert(acct:get("/echo/q")).body)
    assert.equal("GET /echo/q?api_version=2024-01&api_key=a%2Bb%2Fc%3Dd%26e", e.request)
    assert.equal("", e.authorization)
    local got = assert(integ:account { parameters = { base = hb.url }, credentials = { token = "a+b/c=d&e" } }
      :get("/anything")):json()
    assert.equal("a+b/c=d&e", got.args.api_key)
  end)

  it("adds the request parameters to every request", function()
    local acct = crm():account { parameters = { base = hb.url, region = "eu" }, credentials = { token = "t" } }
    for _, m in ipairs({ "get", "post", "put", "patch", "delete" }) do
      local got = assert(acct[m](acct, "/anything", { query = { page = 2 } })):json()
      assert.equal(m:upper(), got.method)
      assert.equal("eu", got.headers["X-Region"])
      assert.equal("2024-01", got.args.api_version)
      assert.equal("2", got.args.page)
    end
  end)

  it("percent-encodes awkward values for their place, never twice", function()
    local acct = crm():account { parameters = { base = ng.url }, credentials = { token = "t" } }
    local awkward = "a b/c?d&e=f#g%"
    local res = assert(acct:get("/echo/{id}/x", { vars = { id = awkward }, query = { q = awkward, u = "é%20" } }))
    local e = echo_lines(res.body)
    assert.equal("GET /echo/a%20b%2Fc%3Fd%26e%3Df%23g%25/x?q=a%20b%2Fc%3Fd%26e%3Df%23g%25&u=%C3%A9%2520"
      .. "&api_version=2024-01", e.request)
    -- httpbin decodes: the values arrive intact
    local got = assert(crm():account { parameters = { base = hb.url }, credentials = { token = "t" } }
      :get("/anything", { query = { q = awkward, u = "ünï" } })):json()
    assert.equal(awkward, got.args.q)
    assert.equal("ünï", got.args.u)
  end)

  it("fills templates in the base URL host and path from parameters", function()
    local integ = connkit.integration {
      name = "x", key = "x", auth = "none",
      base_url = "http://{host}:{port}/echo/{tenant}",
      parameters = { "host", "port", "tenant" },
    }
    local acct = integ:account { parameters = { host = "127.0.0.1", port = ng.port, tenant = "acme corp" } }
    local e = echo_lines(assert(acct:get("/items")).body)
    assert.equal("GET /echo/acme%20corp/items", e.request)
  end)

  it("refuses a host parameter that would change the URL's shape", function()
    local integ = connkit.integration {
      name = "x", key = "x", auth = "none", base_url = "http://{host}/", parameters = { "host" },
    }
    local ok, err = pcall(integ.account, integ, { parameters = { host = "evil.test/x?" } })
    assert.is_false(ok)
    assert.matches("base_url", err)
    assert.matches("{host}", err, 1, true)
  end)

  it("refuses CR/LF in a header value before anything is sent", function()
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    server:settimeout(0.3)
    local acct = crm():account { parameters = { base = "http://127.0.0.1:" .. port }, credentials = { token = "t" } }
    local res, err = acct:get("/x", { headers = { ["X-Evil"] = "a\r\nX-Injected: 1" } })
    assert.is_nil(res)
    assert.equal("header", err.code)
    assert.matches("X%-Evil", err.message)
    assert.is_nil(server:accept(), "a connection was made")
    server:close()
  end)

  it("refuses CR/LF from parameters and tokens when the account is made", function()
    local integ = crm()
    assert.has_error(function()
      integ:account { parameters = { base = hb.url, region = "us\r\nX-A: b" }, credentials = { token = "t" } }
    end)
    local ok, err = pcall(integ.account, integ, { parameters = { base = hb.url }, credentials = { token = "t\nX: y" } })
    assert.is_false(ok)
    assert.matches("credentials.token", err, 1, true)
    assert.not_matches("X: y", err, 1, true)
  end)

  it("returns non-2xx replies as responses", function()
    local acct = crm():account { parameters = { base = hb.url }, credentials = { token = "t" } }
    local res, err = acct:get("/status/418")
    assert.is_nil(err)
    assert.equal(418, res.status)
  end)

  it("lower-cases reply header names and joins repeats", function()
    local acct = crm():account { parameters = { base = hb.url }, credentials = { token = "t" } }
    local res = assert(acct:get("/response-headers", { query = { ["X-Dup"] = { "a", "b" } } }))
    assert.equal("a, b", res.headers["x-dup"])
    assert.equal("application/json", res.headers["content-type"])
    assert.is_nil(res.headers["Content-Type"])
  end)

  it("sends JSON, form and raw bodies", function()
    local acct = crm():account { parameters = { base = hb.url }, credentials = { token = "t" } }
    local got = assert(acct:post("/anything", { json = { a = 1, b = { "x", "y" } } })):json()
    assert.equal("application/json", got.headers["Content-Type"])
    assert.same({ a = 1, b = { "x", "y" } }, got.json)
    got = assert(acct:post("/anything", { form = { name = "a b&c", n = 3 } })):json()
    assert.equal("application/x-www-form-urlencoded", got.headers["Content-Type"])
    assert.same({ name = "a b&c", n = "3" }, got.form)
    got = assert(acct:put("/anything", { body = "raw!", headers = { ["Content-Type"] = "text/plain" } })):json()
    assert.equal("raw!", got.data)
    assert.equal("text/plain", got.headers["Content-Type"])
    got = assert(acct:post("/anything", { body = "no type" })):json()
    assert.is_nil(got.headers["Content-Type"])
    assert.has_error(function() acct:post("/anything", { json = {}, body = "x" }) end)
  end)

  it("lets a request header replace a request parameter header", function()
    local acct = crm():account { parameters = { base = hb.url }, credentials = { token = "t" } }
    local got = assert(acct:get("/headers", { headers = { ["x-region"] = "override" } })):json().headers
    assert.equal("override", got["X-Region"])
    got = assert(acct:get("/headers", { headers = { ["X-Region"] = false } })):json().headers
    assert.is_nil(got["X-Region"])
  end)

  it("times out with err.code timeout", function()
    local acct = crm():account { parameters = { base = hb.url }, credentials = { token = "t" } }
    local t0 = socket.gettime()
    local res, err = acct:get("/delay/5", { timeout = 1 })
    assert.is_nil(res)
    assert.equal("timeout", err.code)
    assert.is_true(socket.gettime() - t0 < 3)
    assert.equal(err.message, tostring(err))
  end)

  it("reports a refused connection with err.code connect", function()
    local port = helpers.free_port()
    local acct = crm():account { parameters = { base = "http://127.0.0.1:" .. port }, credentials = { token = "t" } }
    local res, err = acct:get("/x")
    assert.is_nil(res)
    assert.equal("connect", err.code)
    assert.matches("GET http://127.0.0.1:" .. port .. "/x", err.message, 1, true)
  end)

  it("reuses one connection across requests and across accounts", function()
    local integ = crm()
    local a = integ:account { id = "dev", parameters = { base = ng.url }, credentials = { token = "dev-token" } }
    local b = integ:account { id = "prod", parameters = { base = ng.url }, credentials = { token = "prod-token" } }
    local ea = echo_lines(assert(a:get("/echo/1")).body)
    local eb = echo_lines(assert(b:get("/echo/2")).body)
    local ea2 = echo_lines(assert(a:get("/echo/3")).body)
    assert.equal(ea.connection, eb.connection)
    assert.equal(ea.connection, ea2.connection)
    assert.equal("Bearer dev-token", ea.authorization)
    assert.equal("Bearer prod-token", eb.authorization)
    assert.equal("Bearer dev-token", ea2.authorization)
  end)

  describe("redirects", function()
    local acct
    setup(function()
      acct = crm():account { parameters = { base = ng.url }, credentials = { token = "secret-tok" } }
    end)

    it("are not followed unless asked", function()
      local res = assert(acct:get("/redirect-same"))
      assert.equal(302, res.status)
      assert.matches("/echo/after%-redirect$", res.headers.location)
    end)

    it("keep the auth header on the same origin", function()
      local res = assert(acct:get("/redirect-same", { follow = true }))
      local e = echo_lines(res.body)
      assert.equal("GET /echo/after-redirect", e.request)
      assert.equal("Bearer secret-tok", e.authorization)
      assert.equal(1, res.redirects)
    end)

    it("drop the auth header and request parameters on another origin", function()
      local res = assert(acct:get("/redirect-cross", { follow = true }))
      local e = echo_lines(res.body)
      assert.equal("GET /echo/cross", e.request)
      assert.equal("", e.authorization)
      assert.equal("", e["x-region"])
    end)

    it("stop after the limit", function()
      local res, err = acct:get("/redirect-loop", { follow = 3 })
      assert.is_nil(res)
      assert.equal("too_many_redirects", err.code)
    end)

    it("turn a POST into a GET on 303", function()
      local res = assert(acct:post("/post-303", { json = { a = 1 }, follow = true }))
      assert.equal("GET /echo/after-303", echo_lines(res.body).request)
    end)
  end)

  describe("TLS", function()
    it("refuses a certificate from an unknown CA", function()
      local acct = crm():account { parameters = { base = ng.https_url }, credentials = { token = "t" } }
      local res, err = acct:get("/echo/tls")
      assert.is_nil(res)
      assert.equal("tls", err.code)
    end)

    it("accepts it with its CA file", function()
      local acct = crm():account { parameters = { base = ng.https_url }, credentials = { token = "t" },
        tls = { ca_file = ng.ca_file } }
      local res = assert(acct:get("/echo/tls"))
      assert.equal(200, res.status)
      assert.equal("Bearer t", echo_lines(res.body).authorization)
    end)
  end)

  it("decodes JSON replies and reports bodies that are not JSON", function()
    local acct = crm():account { parameters = { base = hb.url }, credentials = { token = "t" } }
    local v = assert(assert(acct:get("/get", { query = { k = "v" } })):json())
    assert.equal("v", v.args.k)
    local res = assert(acct:get("/html"))
    local x, err = res:json()
    assert.is_nil(x)
    assert.equal("json", err.code)
  end)

  it("exposes the final request through prepare", function()
    local acct = crm():account { parameters = { base = hb.url }, credentials = { token = "tok-prep" } }
    local req = assert(acct:prepare { url = "/anything/{x}", vars = { x = "a b" }, query = { z = 1 } })
    assert.equal("GET", req.method)
    assert.equal(hb.url .. "/anything/a%20b?z=1&api_version=2024-01", req.url)
    assert.equal("Bearer tok-prep", req.headers.Authorization)
    assert.not_matches("tok-prep", tostring(req), 1, true)
    local got = assert(req:send()):json()
    assert.equal("Bearer tok-prep", got.headers.Authorization)
  end)

  it("returns a template error for a request URL it cannot fill", function()
    local acct = crm():account { parameters = { base = hb.url }, credentials = { token = "t" } }
    local res, err = acct:get("/contacts/{id}")
    assert.is_nil(res)
    assert.equal("template", err.code)
    assert.matches("{id}", err.message, 1, true)
  end)

  it("raises for unknown request options", function()
    local acct = crm():account { parameters = { base = hb.url }, credentials = { token = "t" } }
    assert.has_error(function() acct:request { url = "/x", bogus = 1 } end, "request: unknown option 'bogus'")
  end)
end)

describe("basic auth", function()
  it("is accepted by httpbin's /basic-auth", function()
    local hb = helpers.peer("httpbin")
    local integ = connkit.integration {
      name = "Basic", key = "basic1", auth = "basic", base_url = "{base}", parameters = { "base" },
    }
    local ok = integ:account { parameters = { base = hb.url }, credentials = { username = "u", password = "p:ss wörd" } }
    local res = assert(ok:get("/basic-auth/u/{p}", { vars = { p = "p:ss wörd" } }))
    assert.equal(200, res.status)
    assert.same({ authenticated = true, user = "u" }, res:json())
    local bad = integ:account { parameters = { base = hb.url }, credentials = { username = "u", password = "nope" } }
    res = assert(bad:get("/basic-auth/u/{p}", { vars = { p = "p:ss wörd" } }))
    assert.equal(401, res.status)
  end)
end)

describe("auth = none", function()
  it("sends no Authorization header", function()
    local hb = helpers.peer("httpbin")
    local acct = connkit.integration { name = "Open", key = "open", auth = "none", base_url = hb.url }:account {}
    local got = assert(acct:get("/headers")):json().headers
    assert.is_nil(got.Authorization)
    assert.is_nil(got["User-Agent"]) -- none unless the integration sets one
  end)
end)

describe("regression: URLs that look like cache bookkeeping", function()
  it("a relative URL 'n' is a path like any other", function()
    local hb = helpers.peer("httpbin")
    local acct = connkit.integration { name = "N", key = "n", auth = "none", base_url = hb.url .. "/anything" }:account {}
    for _ = 1, 2 do
      local got = assert(assert(acct:get("n")):json())
      assert.equal(hb.url .. "/anything/n", got.url)
      got = assert(assert(acct:request { url = "n" }):json())
      assert.equal(hb.url .. "/anything/n", got.url)
    end
  end)
end)
