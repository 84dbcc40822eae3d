-- refresh.on_body and refresh.when (issue 13 point 2): a reply that says the
-- token was refused in its body (a 200 or a 400 with a code) or by a
-- predicate triggers one refresh and one retry, never more; a refresh token
-- refused with invalid_grant is "reauthorize"; a predicate that raises ends
-- the request with err.code "refresh_when"; bad rules are definition errors
-- naming the field. Against the scripted peer's /rules/* routes
-- (spec/scripted/routes/rules.js); assertions are on what the peer received.
local connkit = require "connkit"
local helpers = require "helpers"

local sp
local n = 0

local function integration(refresh, o)
  o = o or {}
  n = n + 1
  return connkit.integration {
    name = "Rules " .. n, key = "rules" .. n, auth = "oauth2",
    base_url = "{base}",
    parameters = { base = { required = true } },
    oauth2 = {
      grant_type = o.grant_type or "client_credentials",
      token_url = "{base}/rules/token?key=rr" .. n,
      authorize_url = o.grant_type and "{base}/authorize" or nil,
      client_id = "cid", client_secret = "csecret",
    },
    refresh = refresh,
  }
end

local function account(refresh, o)
  return integration(refresh, o):account { parameters = { base = sp.url }, store = o and o.store }
end

local function bearer_of(r) return (r.headers.authorization or ""):match("^Bearer (.+)$") end
local function tokens_issued() return #sp.requests("/rules/token") end

local EXPIRED = { path = "error.code", values = { "TOKEN_EXPIRED" } }

-- (the examples read the client secret from the environment)
local EXAMPLE_ENV = { CLIENT_SECRET = "example-secret" }

describe("refresh rules (scripted peer)", function()
  setup(function() sp = helpers.peer("scripted") end)
  before_each(function() sp.reset() end)

  it("on_body: a 200 whose body says TOKEN_EXPIRED refreshes once and retries once", function()
    local acct = account { on_body = EXPIRED }
    local res = assert(acct:get("/rules/body200"))
    assert.equal(200, res.status)
    assert.equal(1, tokens_issued())
    sp.invalidate_all()
    res = assert(acct:get("/rules/body200"))
    assert.equal(200, res.status)
    assert.same({ data = "ok" }, res:json())
    assert.equal(2, res.attempts)
    local seen = sp.requests("/rules/body200")
    assert.equal(3, #seen)
    assert.equal(2, tokens_issued())
    -- the retry carried the new token, the refused request the old one
    assert.equal(bearer_of(seen[1]), bearer_of(seen[2]))
    assert.are_not.equal(bearer_of(seen[2]), bearer_of(seen[3]))
  end)

  it("without on_body a 200 with an error body is a plain reply", function()
    local acct = account {}
    assert(acct:get("/rules/body200"))
    sp.invalidate_all()
    local res = assert(acct:get("/rules/body200"))
    assert.same({ error = { code = "TOKEN_EXPIRED" } }, res:json())
    assert.equal(2, #sp.requests("/rules/body200"))
    assert.equal(1, tokens_issued())
  end)

  it("on_body: a 400 with the code refreshes; a number value matches a number", function()
    local acct = account { on_body = { path = "error.num", values = { 1001 } } }
    assert(acct:get("/rules/body400"))
    sp.invalidate_all()
    local res = assert(acct:get("/rules/body400"))
    assert.equal(200, res.status)
    assert.equal(3, #sp.requests("/rules/body400"))
    assert.equal(2, tokens_issued())
    -- values are compared as written: the string "1001" is not the number 1001
    local acct2 = account { on_body = { path = "error.num", values = { "1001" } } }
    assert(acct2:get("/rules/body400"))
    sp.invalidate_all()
    sp.reset()
    res = assert(acct2:get("/rules/body400"))
    assert.equal(400, res.status)
    assert.equal(1, #sp.requests("/rules/body400"))
    assert.equal(0, tokens_issued())
  end)

  it("on_body: another code in the body is not a refused token", function()
    local acct = account { on_body = EXPIRED }
    assert(acct:get("/rules/body400"))
    sp.invalidate_all()
    sp.reset()
    local res = assert(acct:get("/rules/body400", { query = { code = "RATE_LIMITED" } }))
    assert.equal(400, res.status)
    assert.equal(1, #sp.requests("/rules/body400"))
    assert.equal(0, tokens_issued())
  end)

  it("the retry happens exactly once: a body that always says expired is returned after one retry", function()
    local acct = account { on_body = EXPIRED }
    local res = assert(acct:get("/rules/always-expired"))
    assert.equal(200, res.status)
    assert.same({ error = { code = "TOKEN_EXPIRED" } }, res:json())
    assert.equal(2, res.attempts)
    assert.equal(2, #sp.requests("/rules/always-expired"))
    assert.equal(2, tokens_issued()) -- the first token and one refresh
  end)

  it("when: a predicate over the reply (a header here) triggers the refresh", function()
    local calls = 0
    local acct = account { when = function(res)
      calls = calls + 1
      return res.headers["x-token-state"] == "expired"
    end }
    assert(acct:get("/rules/header-expired"))
    sp.invalidate_all()
    local res = assert(acct:get("/rules/header-expired"))
    assert.same({ data = "ok" }, res:json())
    local seen = sp.requests("/rules/header-expired")
    assert.equal(3, #seen)
    assert.are_not.equal(bearer_of(seen[2]), bearer_of(seen[3]))
    assert.equal(2, tokens_issued())
    assert.equal(2, calls) -- once per reply, except the retried one (no second refresh)
  end)

  it("when: a predicate that raises ends the request with err.code refresh_when", function()
    local acct = account { when = function() error("boom in my predicate") end }
    local res, err = acct:get("/rules/body200")
    assert.is_nil(res)
    assert.equal("refresh_when", err.code)
    assert.equal(200, err.status)
    assert.matches("refresh.when raised an error", err.message, 1, true)
    assert.matches("boom in my predicate", err.message, 1, true)
    assert.equal(1, #sp.requests("/rules/body200"))
    assert.equal(1, tokens_issued()) -- no refresh
  end)

  it("on_body works for non-blocking requests (req:start) too, and so does a raising when", function()
    local acct = account { on_body = EXPIRED }
    assert(acct:get("/rules/body200"))
    sp.invalidate_all()
    local h = assert(acct:prepare { url = "/rules/body200" }):start()
    local t0 = os.time()
    while not h:done() and os.time() - t0 < 20 do connkit.poll(0.05) end
    local res = assert(h:result())
    assert.same({ data = "ok" }, res:json())
    assert.equal(3, #sp.requests("/rules/body200"))
    assert.equal(2, tokens_issued())

    local acct2 = account { when = function() error("async boom") end }
    assert(acct2:token())
    h = assert(acct2:prepare { url = "/rules/body200" }):start()
    t0 = os.time()
    while not h:done() and os.time() - t0 < 20 do connkit.poll(0.05) end
    local r2, err = h:result()
    assert.is_nil(r2)
    assert.equal("refresh_when", err.code)
    assert.matches("async boom", err.message, 1, true)
  end)

  it("a refresh refused with invalid_grant becomes reauthorize", function()
    local store = connkit.store.memory()
    local now = os.time()
    store.put("rules" .. (n + 1), { access_token = "unknown-to-the-peer", refresh_token = "dead",
      token_type = "bearer", issued_at = now, expires_at = now + 3600 })
    local acct = account({ on_body = EXPIRED }, { grant_type = "authorization_code", store = store })
    local res, err = acct:get("/rules/body200")
    assert.is_nil(res)
    assert.equal("reauthorize", err.code)
    assert.equal("invalid_grant", err.oauth_error)
    assert.is_nil(tostring(err):find("dead", 1, true))
    assert.equal(1, #sp.requests("/rules/body200"))
    local token_reqs = sp.requests("/rules/token")
    assert.equal(1, #token_reqs)
    assert.equal("refresh_token", token_reqs[1].form.grant_type)
  end)

  it("examples/refresh_on_body.lua runs: one refresh and one retry on a body code", function()
    local ok, out = helpers.run_example("refresh_on_body.lua", { sp.url, "/rules/always-expired" }, EXAMPLE_ENV)
    assert.is_true(ok, out)
    assert.matches("^200\t2\t", out)
    assert.equal(2, #sp.requests("/rules/always-expired"))
    assert.equal(2, tokens_issued())
    assert.is_nil(out:find("example-secret", 1, true))
  end)

  describe("definition errors name the field", function()
    local function def_error(refresh)
      local ok, err = pcall(integration, refresh)
      assert.is_false(ok)
      return err
    end
    it("on_body", function()
      assert.matches("refresh.on_body.path is not a JSON path", def_error { on_body = { path = "a..b", values = { 1 } } }, 1, true)
      assert.matches("refresh.on_body.path is required", def_error { on_body = { values = { 1 } } }, 1, true)
      assert.matches("refresh.on_body.values is required", def_error { on_body = { path = "a" } }, 1, true)
      assert.matches("refresh.on_body.values must not be empty", def_error { on_body = { path = "a", values = {} } }, 1, true)
      assert.matches("refresh.on_body.values[2] must be a string or a number",
        def_error { on_body = { path = "a", values = { "x", {} } } }, 1, true)
      assert.matches("refresh.on_body.values must be a list",
        def_error { on_body = { path = "a", values = { code = "x" } } }, 1, true)
      assert.matches("refresh.on_body.pth is not a known field",
        def_error { on_body = { pth = "a", path = "a", values = { 1 } } }, 1, true)
      assert.matches("refresh.on_body must be a table", def_error { on_body = "error.code" }, 1, true)
    end)
    it("when", function()
      assert.matches("refresh.when must be a function", def_error { when = true }, 1, true)
    end)
  end)
end)
