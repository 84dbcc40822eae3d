-- Values cannot walk the path: a vars or parameter value that would make a
-- path segment "." or ".." is refused (err.code "template") and nothing is
-- sent; the dots that are no walk go out as written (httpbin's /anything and
-- nginx's raw request target show what the peer received).
local helpers = require "helpers"
local connkit = require "connkit"

describe("templates cannot walk the path", function()
  local hb, ng

  setup(function()
    hb = helpers.peer("httpbin")
    ng = helpers.peer("nginx")
  end)

  local function account(base)
    return connkit.integration {
      name = "Files", key = "files", auth = "api_token", base_url = base,
    }:account { credentials = { token = "tok-path-1" } }
  end

  it("refuses '.', '..' and '../x' in a path segment with code template, sending nothing", function()
    local acct = account(ng.url)
    for _, v in ipairs({ ".", "..", "../echo/admin", "x/../..", "..\\admin" }) do
      local res, err = acct:get("/echo/files/{name}", { vars = { name = v } })
      assert.is_nil(res, ("value %q was sent"):format(v))
      assert.equal("template", err.code)
      assert.matches("{name}", err.message, 1, true)
      assert.matches("'.' or '..'", err.message, 1, true)
    end
    -- the same for a request made with request() and prepare()
    local _, err = acct:request { url = "/echo/{a}{b}", vars = { a = ".", b = "." } }
    assert.equal("template", err.code)
    _, err = acct:prepare { url = "/echo/files/{name}/meta", vars = { name = ".." } }
    assert.equal("template", err.code)
  end)

  it("sends dots that make no dot segment as they are (httpbin's /anything echo)", function()
    local acct = account(hb.url)
    for _, v in ipairs({ "a.b", "...", ".hidden", "x.." }) do
      local got = assert(acct:get("/anything/files/{name}", { vars = { name = v } })):json()
      assert.equal(hb.url .. "/anything/files/" .. v, got.url)
    end
  end)

  it("encodes '%2e%2e' and '/' so that nginx neither decodes them to dots nor resolves them", function()
    local acct = account(ng.url)
    local function target(v)
      return assert(acct:get("/echo/files/{name}", { vars = { name = v } })).body:match("^GET (%S+)")
    end
    assert.equal("/echo/files/%252e%252e", target("%2e%2e"))
    assert.equal("/echo/files/a%2Fb", target("a/b"))
    assert.equal("/echo/files/...", target("..."))
  end)

  it("refuses an account whose parameter would make a base_url path segment '..'", function()
    local integ = connkit.integration {
      name = "T", key = "tenant", auth = "api_token", parameters = { "tenant" },
      base_url = ng.url .. "/echo/tenants/{tenant}",
    }
    local ok, err = pcall(integ.account, integ, { parameters = { tenant = ".." }, credentials = { token = "t1234" } })
    assert.is_false(ok)
    assert.matches("base_url cannot be filled", err, 1, true)
    assert.matches("'.' or '..'", err, 1, true)
    local acct = integ:account { parameters = { tenant = "t.1" }, credentials = { token = "t1234" } }
    assert.equal("GET /echo/tenants/t.1/x", assert(acct:get("x")).body:match("^([^\n]*)"))
  end)
end)
