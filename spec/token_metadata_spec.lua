-- token_metadata (issue 13 point 4): values of the token reply fill
-- parameters ({instanceUrl} in base_url, a request parameter header), are
-- kept in the token record (a file store reopened by a second account sees
-- them), and are read again after each refresh (the new value is used, by
-- new requests and by the retry after a refused token). Against the
-- scripted peer's /rules/* routes (spec/scripted/routes/rules.js), whose
-- token endpoint answers instance_url = <peer>/rules/i<N> for the Nth token;
-- assertions are on what the peer received (path and Host).
local connkit = require "connkit"
local helpers = require "helpers"

local sp
local n = 0
local KEY = require("connkit.core").b64encode(("k"):rep(32))

local function def(o)
  o = o or {}
  n = n + 1
  local d = {
    name = "Metadata " .. n, key = "meta" .. n, auth = o.auth or "oauth2",
    base_url = "{instanceUrl}/",
    parameters = o.parameters or {
      base = { required = true },
      instanceUrl = { required = true },
      region = {},
    },
    request_parameters = o.request_parameters or { headers = { ["X-Region"] = "{region}" } },
    refresh = o.refresh,
  }
  if d.auth == "oauth2" then
    d.oauth2 = {
      grant_type = o.grant_type or "client_credentials",
      token_url = "{base}/rules/token?key=tm" .. n .. (o.token_query or ""),
      authorize_url = o.grant_type and "{base}/authorize" or nil,
      client_id = "cid", client_secret = "csecret",
      token_metadata = o.token_metadata or { instanceUrl = "instance_url", region = "meta.region" },
    }
  else
    d.custom_token = {
      token_url = "{base}/rules/login?key=tm" .. n, params = { user = "{username}" },
      token_path = "data.token", expires_in_path = "data.ttl",
      token_metadata = o.token_metadata or { instanceUrl = "data.instance.url" },
    }
  end
  return d
end

local function integration(o) return connkit.integration(def(o)) end

local function tokens_issued(n_) return #sp.requests(n_ or "/rules/token") end
local function bearer_of(r) return (r.headers.authorization or ""):match("^Bearer (.+)$") end

-- (the examples read the client secret from the environment)
local EXAMPLE_ENV = { CLIENT_SECRET = "example-secret" }

describe("token_metadata (scripted peer)", function()
  setup(function() sp = helpers.peer("scripted") end)
  before_each(function() sp.reset() end)

  it("fills {instanceUrl} in base_url and a request parameter; fetches the token first; a refresh brings the new value", function()
    local acct = integration():account { parameters = { base = sp.url } }
    assert.equal(0, tokens_issued()) -- nothing fetched at creation
    local res = assert(acct:get("me"))
    assert.equal(200, res.status)
    assert.equal(1, res:json().instance)
    local r = sp.last("/rules/i1/me")
    assert.equal("/rules/i1/me", r.path)
    assert.equal("127.0.0.1:" .. sp.port, r.headers.host)
    assert.equal("region-1", r.headers["x-region"])
    assert.equal(1, tokens_issued())

    assert(acct:refresh())
    res = assert(acct:get("me"))
    assert.equal(2, res:json().instance)
    r = sp.last("/rules/i2/me")
    assert.equal("/rules/i2/me", r.path)
    assert.equal("region-2", r.headers["x-region"])
    assert.equal(1, #sp.requests("/rules/i1/me"))
  end)

  it("the retry after a refused token goes to the new instance", function()
    local acct = integration():account { parameters = { base = sp.url } }
    assert(acct:get("me"))
    sp.invalidate_all()
    local res = assert(acct:get("me"))
    assert.equal(200, res.status)
    assert.equal(2, res.attempts)
    local first, second = sp.requests("/rules/i1/me"), sp.requests("/rules/i2/me")
    assert.equal(2, #first)   -- the first call, then the refused one
    assert.equal(1, #second)  -- the retry, at the instance of the new token
    assert.equal("region-2", second[1].headers["x-region"])
    assert.are_not.equal(bearer_of(first[2]), bearer_of(second[1]))
  end)

  it("is kept in the token record: a second account on the file store uses it without a token request", function()
    local dir = helpers.tmpdir("meta")
    local integ = integration()
    local a = integ:account { parameters = { base = sp.url }, store = connkit.store.file(dir, { key = KEY }) }
    assert(a:get("me"))
    assert(a:refresh())
    local rec = assert(connkit.store.file(dir, { key = KEY }).get(a.id))
    assert.equal(sp.url .. "/rules/i2", rec.metadata.instanceUrl)
    assert.equal("region-2", rec.metadata.region)

    local b = integ:account { parameters = { base = sp.url }, store = connkit.store.file(dir, { key = KEY }) }
    local res = assert(b:get("me"))
    assert.equal(2, res:json().instance)
    assert.equal("region-2", sp.last("/rules/i2/me").headers["x-region"])
    assert.equal(2, tokens_issued()) -- b fetched nothing
  end)

  it("a refresh reply without the value keeps the old one", function()
    local acct = integration({ token_query = "&no_instance=2" }):account { parameters = { base = sp.url } }
    assert(acct:get("me"))
    assert(acct:refresh())
    local res = assert(acct:get("me"))
    assert.equal(1, res:json().instance)
    assert.equal("region-2", sp.last("/rules/i1/me").headers["x-region"]) -- region did change
    -- and the stored record has both, for the next account on the store
    local rec = assert(acct.store.get(acct.id))
    assert.same({ instanceUrl = sp.url .. "/rules/i1", region = "region-2" }, rec.metadata)
  end)

  it("a value that makes base_url unusable refuses the token and keeps the old record", function()
    local acct = integration({ token_query = "&bad_instance=2" }):account { parameters = { base = sp.url } }
    assert(acct:get("me"))
    local tok = assert(acct:token())
    local ok, err = acct:refresh()
    assert.is_nil(ok)
    assert.equal("token_endpoint", err.code)
    assert.matches("base_url", err.message, 1, true)
    assert.equal(tok, acct:token())
    local rec = assert(acct.store.get(acct.id)) -- nothing stored either
    assert.equal(tok, rec.access_token)
    assert.equal(sp.url .. "/rules/i1", rec.metadata.instanceUrl)
    local res = assert(acct:get("me"))
    assert.equal(1, res:json().instance)
  end)

  it("works with custom_token (a nested path)", function()
    local acct = integration({ auth = "custom_token", parameters = { base = {}, instanceUrl = {} },
      request_parameters = {} }):account { parameters = { base = sp.url }, credentials = { username = "u" } }
    local res = assert(acct:get("me"))
    assert.equal(1, res:json().instance)
    assert.equal("/rules/i1/me", sp.last("/rules/i1/me").path)
    assert(acct:refresh())
    res = assert(acct:get("me"))
    assert.equal(2, res:json().instance)
    assert.equal(2, tokens_issued("/rules/login"))
  end)

  it("a value given at creation is used only until the first token brings one", function()
    local acct = integration():account { parameters = { base = sp.url, instanceUrl = sp.url .. "/rules/i9",
      region = "given" } }
    local res = assert(acct:get("me"))
    assert.equal(1, res:json().instance)
    assert.equal(0, #sp.requests("/rules/i9/me"))
  end)

  it("a stored token without the values (stored before token_metadata was added) is renewed once", function()
    local store = connkit.store.memory()
    local now = os.time()
    local d = def()
    store.put(d.key, { access_token = "old-token", token_type = "bearer", issued_at = now, expires_at = now + 3600 })
    local acct = connkit.integration(d):account { parameters = { base = sp.url }, store = store }
    local res = assert(acct:get("me"))
    assert.equal(1, res:json().instance)
    assert.equal(1, tokens_issued())
    assert.equal(sp.url .. "/rules/i1", store.get(d.key).metadata.instanceUrl)
  end)

  it("a secret parameter filled from the reply is hidden from tostring(request)", function()
    local acct = integration({ parameters = { base = {}, instanceUrl = {}, region = { secret = true } } })
      :account { parameters = { base = sp.url } }
    local req = assert(acct:prepare { url = "me" })
    assert.equal("region-1", req.headers["X-Region"])
    assert.is_nil(tostring(req):find("region-1", 1, true))
  end)

  it("before the first token: an account that cannot fetch one fails the request clearly", function()
    local acct = integration({ grant_type = "authorization_code" }):account { parameters = { base = sp.url } }
    local res, err = acct:get("me")
    assert.is_nil(res)
    assert.equal("reauthorize", err.code)
    assert.equal(0, #sp.requests())
  end)

  it("examples/token_metadata.lua runs: the request lands on the instance of the token reply", function()
    local ok, out = helpers.run_example("token_metadata.lua", { sp.url .. "/rules/token?key=example", "me" }, EXAMPLE_ENV)
    assert.is_true(ok, out)
    assert.matches("^200\t", out)
    local r = sp.last("/rules/i1/me")
    assert.equal("127.0.0.1:" .. sp.port, r.headers.host)
    assert.equal(1, tokens_issued())
  end)

  describe("definition errors name the field", function()
    local function def_error(o)
      local ok, err = pcall(function() return connkit.integration(def(o)) end)
      assert.is_false(ok)
      return err
    end
    it("a name that is not a declared parameter", function()
      assert.matches("oauth2.token_metadata.instanceURL names {instanceURL}, which is not a declared parameter",
        def_error { token_metadata = { instanceURL = "instance_url" } }, 1, true)
      assert.matches("custom_token.token_metadata.nope names {nope}",
        def_error { auth = "custom_token", parameters = { base = {}, instanceUrl = {} }, request_parameters = {},
          token_metadata = { nope = "x" } }, 1, true)
    end)
    it("a path that does not parse, a value that is not a string", function()
      assert.matches("oauth2.token_metadata.instanceUrl is not a JSON path",
        def_error { token_metadata = { instanceUrl = "a..b" } }, 1, true)
      assert.matches("oauth2.token_metadata.instanceUrl must be a string",
        def_error { token_metadata = { instanceUrl = 3 } }, 1, true)
      assert.matches("oauth2.token_metadata must map parameter names",
        def_error { token_metadata = { "instance_url" } }, 1, true)
    end)
  end)
end)
