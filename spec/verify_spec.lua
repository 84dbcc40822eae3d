-- Verifying an account (issue 13 point 5): the integration's verify block,
-- checked field by field, and account:verify() -> true, res | nil, err with
-- the status and a short excerpt of the body without secrets. Against
-- httpbin (it echoes what it received, and checks basic auth) and the
-- scripted peer (a token account: the request goes through the refresh
-- rules).
local helpers = require "helpers"
local connkit = require "connkit"

local hb, sp
local n = 0
local TOKEN = "tok-verify-0123456789abcdef"

local function api_account(verify, base)
  n = n + 1
  return connkit.integration {
    name = "Verify " .. n, key = "verify" .. n, auth = "api_token", base_url = base or hb.url,
    parameters = { region = { default = "eu" } },
    verify = verify,
  }:account { credentials = { token = TOKEN } }
end

describe("account:verify()", function()
  setup(function()
    hb = helpers.peer("httpbin")
    sp = helpers.peer("scripted")
  end)

  it("is true when the status is expected, and sends the request as declared", function()
    local acct = api_account { method = "POST", url = "/anything/{region}/me", expect = { 201, 200 },
      query = { fields = "id" }, headers = { ["X-Check"] = "yes" } }
    local ok, res = acct:verify()
    assert.is_true(ok)
    local echo = res:json()
    assert.equal("POST", echo.method)
    assert.equal(hb.url .. "/anything/eu/me?fields=id", echo.url)
    assert.equal("yes", echo.headers["X-Check"])
    assert.equal("Bearer " .. TOKEN, echo.headers.Authorization)
    assert.equal("ok", acct:status().state)
  end)

  it("checks basic credentials against the peer", function()
    local def = { name = "Verify basic", key = "verifybasic", auth = "basic", base_url = hb.url,
      verify = { url = "/basic-auth/{username}/right-pass" } }
    local integ = connkit.integration(def)
    assert.is_true(integ:account { credentials = { username = "ann", password = "right-pass" } }:verify())
    local wrong = integ:account { credentials = { username = "ann", password = "wrong-pass" } }
    local ok, err = wrong:verify()
    assert.is_nil(ok)
    assert.equal("verify", err.code)
    assert.equal(401, err.status)
    assert.matches("answered 401, expected 200", err.message)
    assert.is_nil(err.message:find("wrong-pass", 1, true))
    local st = wrong:status()
    assert.equal("failing", st.state)
    assert.equal("verify", st.last_error.code)
  end)

  it("gives the status and a short excerpt with no secret when the status is not expected", function()
    -- httpbin's /anything echoes the Authorization header (the token) in its body
    local acct = api_account { url = "/anything/me", expect = { 204 } }
    local ok, err = acct:verify()
    assert.is_nil(ok)
    assert.equal("verify", err.code)
    assert.equal(200, err.status)
    assert.is_true(#err.excerpt <= 200)
    assert.matches('"Authorization":"%*%*%*"', err.excerpt)
    assert.matches("expected 204", err.message)
    assert.matches("GET " .. hb.url:gsub("%p", "%%%0") .. "/anything/me answered 200", err.message)
    assert.is_nil(err.message:find(TOKEN, 1, true))
    assert.is_nil(err.excerpt:find(TOKEN, 1, true))
    assert.is_true(#err.message < 400)
    assert.is_nil(tostring(err):find(TOKEN, 1, true))
  end)

  it("gives the request's error when there is no reply", function()
    local acct = api_account({ url = "/me" }, "http://127.0.0.1:" .. helpers.free_port())
    local ok, err = acct:verify()
    assert.is_nil(ok)
    assert.equal("connect", err.code)
    assert.equal("failing", acct:status().state)
    assert.equal("connect", acct:status().last_error.code)
  end)

  it("goes through the refresh rules of a token account", function()
    sp.reset()
    n = n + 1
    local acct = connkit.integration {
      name = "Verify cc", key = "verifycc" .. n, auth = "oauth2", base_url = sp.url,
      oauth2 = { grant_type = "client_credentials", token_url = sp.url .. "/token/ok",
        client_id = "v", client_secret = "verify-secret-xyz" },
      verify = { url = "/resource" },
    }:account {}
    assert.is_true(acct:verify())
    sp.invalidate_all()
    local ok, res = acct:verify()
    assert.is_true(ok)
    assert.equal(2, res.attempts)
    assert.equal(2, #sp.requests("/token/ok"))
    assert.equal(3, #sp.requests("/resource"))
    assert.equal("Bearer " .. assert(acct:token()), sp.last("/resource").headers.authorization)
  end)

  it("raises, naming verify, when the integration has none", function()
    local acct = connkit.integration { name = "x", key = "verifynone", auth = "none" }:account {}
    local ok, err = pcall(acct.verify, acct)
    assert.is_false(ok)
    assert.matches("verify", err)
    assert.matches("no verify block", err:gsub("needs a verify block", "no verify block"))
  end)
end)

describe("the verify block", function()
  local function def(v)
    return { name = "x", key = "verifybad", auth = "none", base_url = "https://api.acme.test",
      parameters = { region = { default = "eu" } }, verify = v }
  end
  local cases = {
    { "not a table", "/me", "verify" },
    { "without url", { method = "GET" }, "verify.url" },
    { "with an unknown field", { url = "/me", expected = { 200 } }, "verify.expected" },
    { "with a bad method", { url = "/me", method = "GE T" }, "verify.method" },
    { "with an undeclared placeholder", { url = "/me/{nope}" }, "verify.url" },
    { "with a status that is not a number", { url = "/me", expect = { "200" } }, "verify.expect%[1%]" },
    { "with a status out of range", { url = "/me", expect = { 99 } }, "verify.expect%[1%]" },
    { "with an empty expect", { url = "/me", expect = {} }, "verify.expect" },
    { "with a bad header name", { url = "/me", headers = { ["X Bad"] = "1" } }, "verify.headers.X Bad" },
    { "with a header value that is a table", { url = "/me", headers = { X = {} } }, "verify.headers.X" },
    { "with a query that is not a table", { url = "/me", query = "a=1" }, "verify.query" },
  }
  for _, c in ipairs(cases) do
    it(c[1] .. " raises naming " .. c[3]:gsub("%%", ""), function()
      local ok, err = pcall(connkit.integration, def(c[2]))
      assert.is_false(ok)
      assert.matches(c[3], err)
    end)
  end

  it("takes an absolute URL and a relative one", function()
    assert.is_table(connkit.integration(def { url = "https://id.acme.test/{region}/me" }).verify)
    assert.equal("GET", connkit.integration(def { url = "/me" }).verify.method)
  end)
end)
