-- Pushed authorization requests (RFC 9126): oauth2.par / par_url, and the
-- automatic push when the issuer's metadata says
-- require_pushed_authorization_requests. Against oidc-provider (its PAR
-- endpoint counts and records what it received: spec/oidc/ext/par.mjs; its
-- par-client and par-public-client are refused any request that was not
-- pushed), and a private instance started with par_required for the
-- metadata case.
local helpers = require "helpers"
local connkit = require "connkit"
local discovery = require "connkit.auth.discovery"

local PAR_CLIENT = { id = "par-client", secret = "par:s3cret/+ %" }
local PUBLIC = { id = "par-public-client" }

local op
local n = 0

local function decode(v)
  return (v:gsub("%+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- The query of a URL as a table, and its parameter names sorted.
local function query_of(url)
  local t, names = {}, {}
  for k, v in (url:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do
    t[decode(k)] = decode(v)
    names[#names + 1] = decode(k)
  end
  table.sort(names)
  return t, names
end

local function integration(peer, o)
  n = n + 1
  local oauth2 = { issuer = "{issuer}", scope = "openid api" }
  for k, v in pairs(o or {}) do oauth2[k] = v end
  return connkit.integration {
    name = "PAR " .. n, key = "par" .. n, auth = "oauth2", base_url = "{issuer}",
    parameters = { issuer = { required = true } }, oauth2 = oauth2,
  }, { parameters = { issuer = peer.issuer } }
end

local function account(peer, o, opts)
  local integ, a = integration(peer, o)
  for k, v in pairs(opts or {}) do a[k] = v end
  return integ:account(a)
end

local function par_stats(peer) return peer.stats().par or { total = 0, ok = 0, error = 0, requests = {} } end

describe("pushed authorization requests against oidc-provider", function()
  setup(function() op = helpers.peer("oidc") end)
  before_each(function()
    op.reset()
    discovery.flush()
  end)

  it("pushes the request: the authorization URL carries only client_id and request_uri", function()
    local a = account(op, { par = true, client_id = PAR_CLIENT.id, client_secret = PAR_CLIENT.secret })
    local url = assert(a:authorize_url { redirect_uri = op.endpoints.callback, params = { prompt = "consent" } })
    assert.equal(op.endpoints.authorization, url:match("^[^?]*"))
    local q, names = query_of(url)
    assert.same({ "client_id", "request_uri" }, names)
    assert.equal(PAR_CLIENT.id, q.client_id)
    assert.matches("^urn:ietf:params:oauth:request_uri:", q.request_uri)
    -- what the PAR endpoint received, authenticated as the client
    local st = par_stats(op)
    assert.equal(1, st.total)
    assert.equal(1, st.ok)
    local got = st.requests[1]
    assert.equal(201, got.status)
    assert.equal("basic", got.client_auth)
    assert.equal("code", got.response_type)
    assert.equal(PAR_CLIENT.id, got.client_id)
    assert.equal(op.endpoints.callback, got.redirect_uri)
    assert.equal("openid api", got.scope)
    assert.equal("S256", got.code_challenge_method)
    assert.equal(43, #got.code_challenge)
    assert.equal("consent", got.prompt)
    assert.is_string(got.state)
    for _, name in ipairs(got.params) do
      assert.are_not.equal("code_verifier", name)
      assert.are_not.equal("client_secret", name)
    end
    -- the login completes: the state the server echoes is the pushed one
    assert.equal(0, op.stats().authorization)
    local cb = assert(op.authorize(url))
    local cq = query_of(cb)
    assert.is_nil(cq.error)
    assert.equal(got.state, cq.state)
    assert.is_true(assert(a:finish_authorization(cb)))
    local tr = op.token_requests()
    assert.equal(1, #tr)
    assert.equal("authorization_code", tr[1].grant_type)
    assert.equal(op.endpoints.callback, tr[1].redirect_uri)
    assert.equal(43, tr[1].code_verifier_length) -- the verifier stayed here until now
    assert.equal(200, assert(a:get("/api/me")).status)
  end)

  it("is needed by the par-client: without par the server refuses the authorization request", function()
    local a = account(op, { client_id = PAR_CLIENT.id, client_secret = PAR_CLIENT.secret })
    local url = assert(a:authorize_url { redirect_uri = op.endpoints.callback })
    local _, names = query_of(url)
    assert.is_true(#names > 2)
    assert.equal(0, par_stats(op).total)
    local cb = assert(op.authorize(url))
    local ok, err = a:finish_authorization(cb)
    assert.is_nil(ok)
    assert.equal("invalid_request", err.code)
    assert.equal(0, #op.token_requests())
  end)

  it("logs in through the loopback redirect with a pushed request", function()
    local a = account(op, { par = true, client_id = PUBLIC.id, client_auth = "none", scope = "openid offline_access" })
    local browser, shown
    local ok, err = a:login { timeout = 20, on_url = function(url)
      shown = url
      browser = op.browse(url)
    end }
    helpers.stop(browser)
    assert.is_nil(err)
    assert.is_true(ok)
    local _, names = query_of(shown)
    assert.same({ "client_id", "request_uri" }, names)
    local got = par_stats(op).requests[1]
    assert.equal("none", got.client_auth)
    assert.matches("^http://127%.0%.0%.1:%d+/callback$", got.redirect_uri)
    assert.equal(43, #got.code_challenge)
    assert.equal(200, assert(a:get("/api/me")).status)
    assert.is_true(a:status().has_refresh_token)
  end)

  it("pushes to an explicit par_url without discovery (par_url alone turns PAR on)", function()
    n = n + 1
    local a = connkit.integration {
      name = "PAR explicit", key = "parx" .. n, auth = "oauth2", base_url = op.issuer,
      oauth2 = { authorize_url = op.endpoints.authorization, token_url = op.endpoints.token,
        par_url = op.issuer .. "/request", client_id = PAR_CLIENT.id, client_secret = PAR_CLIENT.secret,
        scope = "openid" },
    }:account {}
    local url = assert(a:authorize_url { redirect_uri = op.endpoints.callback })
    local _, names = query_of(url)
    assert.same({ "client_id", "request_uri" }, names)
    assert.equal(1, par_stats(op).ok)
    assert(a:finish_authorization(assert(op.authorize(url))))
  end)

  it("maps a refused push like a token endpoint error and never sends the user on", function()
    local a = account(op, { par = true, client_id = PAR_CLIENT.id, client_secret = "not-the-par-secret" })
    local url, err = a:authorize_url { redirect_uri = op.endpoints.callback }
    assert.is_nil(url)
    assert.equal("invalid_client", err.code)
    assert.equal(401, err.status)
    assert.matches("pushed authorization request endpoint", err.message, 1, true)
    assert.is_nil(err.message:find("not-the-par-secret", 1, true))
    assert.equal(1, par_stats(op).error)
    -- login stops at once, without showing a URL
    local shown = false
    local ok, lerr = a:login { timeout = 20, on_url = function() shown = true end }
    assert.is_nil(ok)
    assert.equal("invalid_client", lerr.code)
    assert.is_false(shown)
    assert.equal(0, op.stats().authorization)
    -- a redirect_uri the client did not register: refused at the push
    local b = account(op, { par = true, client_id = PAR_CLIENT.id, client_secret = PAR_CLIENT.secret })
    local url2, err2 = b:authorize_url { redirect_uri = "https://elsewhere.test/cb" }
    assert.is_nil(url2)
    assert.equal(400, err2.status)
    assert.equal("invalid_request", err2.code)
    assert.matches("redirect_uri", err2.message, 1, true)
    assert.equal(3, par_stats(op).error) -- authorize_url, login, and this one
  end)

  it("needs a PAR endpoint: none named and none in the metadata is a config error", function()
    n = n + 1
    local a = connkit.integration {
      name = "PAR none", key = "parnone" .. n, auth = "oauth2", base_url = op.issuer,
      oauth2 = { authorize_url = op.endpoints.authorization, token_url = op.endpoints.token, par = true,
        client_id = PAR_CLIENT.id, client_secret = PAR_CLIENT.secret },
    }:account {}
    local url, err = a:authorize_url { redirect_uri = op.endpoints.callback }
    assert.is_nil(url)
    assert.equal("config", err.code)
    assert.matches("oauth2.par_url", err.message, 1, true)
    assert.equal(0, par_stats(op).total)
  end)
end)

describe("a server whose metadata requires pushed authorization requests", function()
  local strict
  setup(function()
    op = helpers.peer("oidc")
    strict = op.new { par_required = 1 }
  end)
  teardown(function() if strict then strict.stop() end end)
  before_each(function()
    strict.reset()
    discovery.flush()
  end)

  it("gets them without par = true, from the metadata alone", function()
    assert.is_true(assert(strict.get("/.well-known/openid-configuration")).require_pushed_authorization_requests)
    local c = strict.clients.basic
    local a = account(strict, { client_id = c.id, client_secret = c.secret })
    local url = assert(a:authorize_url { redirect_uri = strict.endpoints.callback })
    local _, names = query_of(url)
    assert.same({ "client_id", "request_uri" }, names)
    local st = par_stats(strict)
    assert.equal(1, st.ok)
    assert.equal(c.id, st.requests[1].client_id)
    assert(a:finish_authorization(assert(strict.authorize(url))))
    assert.equal(200, assert(a:get("/api/me")).status)
  end)

  it("does not get them with par = false, and refuses that request", function()
    local c = strict.clients.basic
    local a = account(strict, { par = false, client_id = c.id, client_secret = c.secret })
    local url = assert(a:authorize_url { redirect_uri = strict.endpoints.callback })
    assert.is_string(query_of(url).redirect_uri)
    assert.equal(0, par_stats(strict).total)
    local ok, err = a:finish_authorization(assert(strict.authorize(url)))
    assert.is_nil(ok)
    assert.equal("invalid_request", err.code)
  end)
end)

describe("PAR definitions", function()
  local function def(o)
    local oauth2 = { client_id = "x", token_url = "https://idp.test/token", authorize_url = "https://idp.test/auth" }
    for k, v in pairs(o) do oauth2[k] = v end
    return { name = "D", key = "d", auth = "oauth2", base_url = "https://api.test", oauth2 = oauth2 }
  end

  it("checks oauth2.par and oauth2.par_url, naming the field", function()
    for _, case in ipairs({
      { { par = "yes" }, "oauth2.par must be true or false" },
      { { par_url = "http://idp.test/par" }, "oauth2.par_url" },
      { { par_url = 42 }, "oauth2.par_url must be a string" },
      { { par = true, grant_type = "client_credentials" }, 'oauth2.par is for grant_type = "authorization_code"' },
      { { parr = true }, "oauth2.parr is not a known field" },
    }) do
      local ok, msg = pcall(connkit.integration, def(case[1]))
      assert.is_false(ok)
      assert.matches(case[2], msg, 1, true)
    end
    assert(connkit.integration(def { par = true, par_url = "https://idp.test/par" }))
    assert(connkit.integration(def { par = false }))
  end)
end)
