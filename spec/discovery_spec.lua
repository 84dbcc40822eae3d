-- Discovery (RFC 8414, OpenID Connect Discovery 1.0) and the `iss` of
-- authorization responses (RFC 9207): against oidc-provider with only
-- `oauth2.issuer` set, and against a dishonest provider (the scripted peer's
-- spec/scripted/routes/dishonest.js) for a wrong issuer in the metadata or
-- in the response, a missing iss where one is advertised, only-plain PKCE
-- and caching headers. Every refusal is asserted to happen before the token
-- endpoint was called, by what the peer counted.
local helpers = require "helpers"
local connkit = require "connkit"
local discovery = require "connkit.auth.discovery"

local op, sp

local function query_of(url)
  local t = {}
  for k, v in (url:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do
    t[k] = v:gsub("%+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  end
  return t
end

describe("discovery against oidc-provider", function()
  setup(function() op = helpers.peer("oidc") end)
  before_each(function()
    op.reset()
    discovery.flush()
  end)

  local function integration(client, extra)
    local c = op.clients[client]
    local o = {
      issuer = "{issuer}", scope = "openid offline_access api:read",
      client_id = c.id, client_secret = c.secret, client_auth = c.auth,
      extra_params = { resource = "{issuer}/api" }, authorize_params = { resource = "{issuer}/api" },
    }
    for k, v in pairs(extra or {}) do o[k] = v end
    return connkit.integration {
      name = "Discovered " .. client, key = "disc" .. client, auth = "oauth2",
      base_url = "{issuer}", parameters = { issuer = { required = true } }, oauth2 = o,
    }
  end

  it("fills every endpoint from the metadata: authorization, token, refresh, revocation", function()
    local acct = integration("basic"):account { parameters = { issuer = op.issuer } }
    local url = assert(acct:authorize_url { redirect_uri = op.endpoints.callback })
    assert.equal(op.endpoints.authorization, url:match("^[^?]*"))
    assert.equal("S256", query_of(url).code_challenge_method)
    local cb = assert(op.authorize(url))
    assert.equal(op.issuer, query_of(cb).iss)
    assert(acct:finish_authorization(cb))
    local reqs = op.token_requests()
    assert.equal(1, #reqs)
    assert.equal("authorization_code", reqs[1].grant_type)
    assert.equal(200, reqs[1].status)
    assert.equal(200, assert(acct:get("/api/me")).status)
    assert(acct:refresh())
    assert.equal("refresh_token", op.token_requests()[2].grant_type)
    assert(acct:revoke())
    assert.equal(1, op.stats().revocation)
  end)

  it("logs in through the loopback redirect with only the issuer set", function()
    local acct = connkit.integration {
      name = "Public", key = "discpub", auth = "oauth2", base_url = "{issuer}",
      parameters = { issuer = { required = true } },
      oauth2 = { issuer = "{issuer}", client_id = op.clients.public.id, client_auth = "none",
        scope = "openid offline_access", extra_params = { resource = "{issuer}/api" },
        authorize_params = { resource = "{issuer}/api" } },
    }:account { id = "disclogin", parameters = { issuer = op.issuer } }
    local browser
    local ok, err = acct:login { timeout = 20, on_url = function(url)
      assert.equal(op.endpoints.authorization, url:match("^[^?]*"))
      browser = op.browse(url)
    end }
    helpers.stop(browser)
    assert.is_nil(err)
    assert.is_true(ok)
    assert.equal(200, assert(acct:get("/api/me")).status)
  end)

  it("runs the device flow at the discovered device endpoint", function()
    local acct = integration("public", { scope = "openid offline_access", extra_params = {}, authorize_params = {} })
      :account { id = "discdev", parameters = { issuer = op.issuer } }
    local shown
    local ok, err = acct:login_device { timeout = 30, on_code = function(uri, code)
      shown = uri
      assert(op.approve(code))
    end }
    assert.is_nil(err)
    assert.is_true(ok)
    assert.equal(op.endpoints.verification, shown)
    assert.equal(1, op.stats().device_authorization)
  end)
end)

describe("discovery definitions", function()
  local function def(o)
    return { name = "D", key = "d", auth = "oauth2", base_url = "https://api.test", oauth2 = o }
  end

  it("needs token_url and authorize_url only without an issuer to discover", function()
    assert.has_error(function() connkit.integration(def { client_id = "x" }) end)
    local ok, msg = pcall(connkit.integration, def { client_id = "x" })
    assert.is_false(ok)
    assert.matches("oauth2.token_url is required", msg, 1, true)
    assert(connkit.integration(def { client_id = "x", issuer = "https://idp.test" }))
    -- discovery = false: the issuer only checks iss, the URLs are needed
    ok, msg = pcall(connkit.integration, def { client_id = "x", issuer = "https://idp.test", discovery = false })
    assert.is_false(ok)
    assert.matches("oauth2.token_url is required", msg, 1, true)
  end)

  it("checks issuer and discovery, naming the field", function()
    for _, case in ipairs({
      { { issuer = "https://idp.test/?x=1" }, "oauth2.issuer must have no query" },
      { { issuer = "http://idp.test" }, "oauth2.issuer uses http://" },
      { { issuer = "https://idp.test", discovery = "yes" }, "oauth2.discovery must be" },
      { { token_url = "https://idp.test/t", authorize_url = "https://idp.test/a", discovery = true }, "oauth2.discovery needs oauth2.issuer" },
    }) do
      local o = case[1]
      o.client_id = "x"
      local ok, msg = pcall(connkit.integration, def(o))
      assert.is_false(ok)
      assert.matches(case[2], msg, 1, true)
    end
  end)

  it("builds the well-known URLs (RFC 8414 3.1 path insertion)", function()
    local u = discovery.well_known("https://idp.test/tenant/one/", "auto")
    assert.same({ "https://idp.test/tenant/one/.well-known/openid-configuration",
      "https://idp.test/.well-known/oauth-authorization-server/tenant/one" }, u)
    assert.same({ "https://idp.test/.well-known/oauth-authorization-server" }, discovery.well_known("https://idp.test", "oauth"))
  end)

  it("reads the caching headers", function()
    assert.equal(60, discovery.freshness { ["cache-control"] = "public, max-age=60" })
    assert.equal(50, discovery.freshness { ["cache-control"] = "max-age=60", age = "10" })
    assert.is_nil(discovery.freshness { ["cache-control"] = "no-store" })
    assert.is_nil(discovery.freshness { ["cache-control"] = "max-age=0" })
    assert.is_nil(discovery.freshness { expires = "Thu, 01 Dec 1994 16:00:00 GMT" })
    assert.is_nil(discovery.freshness { expires = "0" })
    local later = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 120)
    local f = discovery.freshness { expires = later }
    assert.is_true(f > 100 and f <= 120)
    assert.equal(discovery.DEFAULT_TTL, discovery.freshness {})
  end)
end)

describe("a dishonest provider", function()
  setup(function() sp = helpers.peer("scripted") end)
  before_each(function()
    sp.reset()
    discovery.flush()
  end)

  local REDIRECT = "http://127.0.0.1:9/callback"

  local function issuer(name) return sp.url .. "/dis/" .. name end
  local function count(path) return #sp.requests(path) end
  local function token_calls(name) return count("/dis/" .. name .. "/token") end
  local function metadata_fetches(name) return count("/dis/" .. name .. "/.well-known/openid-configuration") end

  local function account(name, extra, id)
    local o = { issuer = "{issuer}", client_id = "c1", client_secret = "s3cret-of-c1" }
    for k, v in pairs(extra or {}) do o[k] = v end
    return connkit.integration {
      name = "Dishonest", key = "dis", auth = "oauth2", base_url = "{issuer}",
      parameters = { issuer = { required = true } }, oauth2 = o,
    }:account { id = id or name, parameters = { issuer = issuer(name) } }
  end

  -- The authorization endpoint's redirect (not followed): the callback URL.
  local function callback(url)
    local ok, out = helpers.run(("curl -sS -g --max-time 10 -o /dev/null -w %s %s")
      :format(helpers.shell_quote("%{redirect_url}"), helpers.shell_quote(url)))
    assert(ok, out)
    return (out:gsub("%s+$", ""))
  end

  it("refuses metadata that names another issuer, before any token request", function()
    local cc = account("wrong-issuer", { grant_type = "client_credentials" })
    local tok, err = cc:token()
    assert.is_nil(tok)
    assert.equal("issuer_mismatch", err.code)
    assert.matches(issuer("someone-else"), err.message, 1, true)
    assert.not_matches("s3cret", err.message, 1, true)
    local acct = account("wrong-issuer", nil, "wi2")
    local url, uerr = acct:authorize_url { redirect_uri = REDIRECT }
    assert.is_nil(url)
    assert.equal("issuer_mismatch", uerr.code)
    local ok, lerr = acct:login { timeout = 5, on_url = function() error("no URL may be shown") end }
    assert.is_nil(ok)
    assert.equal("issuer_mismatch", lerr.code)
    assert.is_true(metadata_fetches("wrong-issuer") >= 1)
    assert.equal(0, token_calls("wrong-issuer"))
    assert.equal(0, count("/dis/wrong-issuer/authorize"))
  end)

  it("keeps metadata for its max-age, across accounts", function()
    for i = 1, 2 do
      assert(account("maxage", { grant_type = "client_credentials" }, "m" .. i):token())
    end
    assert.equal(1, metadata_fetches("maxage"))
    assert.equal(2, token_calls("maxage"))
    require("socket").sleep(2.5)
    assert(account("maxage", { grant_type = "client_credentials" }, "m3"):token())
    assert.equal(2, metadata_fetches("maxage"))
  end)

  it("fetches no-store metadata again for each account, once per account", function()
    local a = account("nostore", { grant_type = "client_credentials" }, "n1")
    assert(a:token())
    assert(a:refresh())
    assert.equal(1, metadata_fetches("nostore"))
    assert(account("nostore", { grant_type = "client_credentials" }, "n2"):token())
    assert.equal(2, metadata_fetches("nostore"))
    assert.equal(3, token_calls("nostore"))
  end)

  it("keeps metadata without caching headers for the process", function()
    for i = 1, 3 do assert(account("good", { grant_type = "client_credentials" }, "g" .. i):token()) end
    assert.equal(1, metadata_fetches("good"))
  end)

  it("fills a tenant parameter into the issuer before it looks for the metadata", function()
    local acct = connkit.integration {
      name = "Tenant", key = "tenant", auth = "oauth2", base_url = "{base}",
      parameters = { base = { required = true }, tenant = { required = true } },
      oauth2 = { issuer = "{base}/dis/{tenant}", grant_type = "client_credentials",
        client_id = "c1", client_secret = "s3cret-of-c1" },
    }:account { parameters = { base = sp.url, tenant = "good" } }
    assert(acct:token())
    assert.equal(1, metadata_fetches("good"))
    assert.equal(1, token_calls("good"))
  end)

  it("lets explicit URLs win over the metadata", function()
    local acct = connkit.integration {
      name = "Explicit", key = "explicit", auth = "oauth2", base_url = "{issuer}",
      parameters = { issuer = { required = true }, base = { required = true } },
      oauth2 = { issuer = "{issuer}", token_url = "{base}/token/ok", grant_type = "client_credentials",
        client_id = "c1", client_secret = "s3cret-of-c1" },
    }:account { parameters = { issuer = issuer("good"), base = sp.url } }
    assert(acct:token())
    assert.equal(1, count("/token/ok"))
    assert.equal(0, token_calls("good"))
    assert.equal(1, metadata_fetches("good"))
  end)

  it("refuses a server that offers only plain PKCE, and never sends plain", function()
    local acct = account("plain-pkce")
    local url, err = acct:authorize_url { redirect_uri = REDIRECT }
    assert.is_nil(url)
    assert.equal("config", err.code)
    assert.matches("S256", err.message, 1, true)
    assert.equal(0, token_calls("plain-pkce"))
    -- without PKCE the same server is usable (and no challenge is sent)
    url = assert(account("plain-pkce", { pkce = false }, "pp2"):authorize_url { redirect_uri = REDIRECT })
    assert.is_nil(query_of(url).code_challenge_method)
  end)

  it("refuses a wrong iss in the authorization response before the token request", function()
    local acct = account("iss")
    local url = assert(acct:authorize_url { redirect_uri = REDIRECT, params = { iss_mode = "wrong" } })
    local cb = callback(url)
    assert.equal(issuer("someone-else"), query_of(cb).iss)
    local ok, err = acct:finish_authorization(cb)
    assert.is_nil(ok)
    assert.equal("issuer_mismatch", err.code)
    assert.equal(0, token_calls("iss"))
    -- the right one goes through
    assert(acct:finish_authorization(callback(assert(acct:authorize_url { redirect_uri = REDIRECT }))))
    assert.equal(1, token_calls("iss"))
  end)

  it("refuses a response without iss when the issuer advertises it", function()
    local acct = account("iss")
    local cb = callback(assert(acct:authorize_url { redirect_uri = REDIRECT, params = { iss_mode = "none" } }))
    assert.is_nil(query_of(cb).iss)
    local ok, err = acct:finish_authorization(cb)
    assert.is_nil(ok)
    assert.equal("issuer_mismatch", err.code)
    assert.matches("authorization_response_iss_parameter_supported", err.message, 1, true)
    assert.equal(0, token_calls("iss"))
    -- a server that does not advertise it may leave iss out
    local good = account("good")
    assert(good:finish_authorization(callback(assert(good:authorize_url { redirect_uri = REDIRECT,
      params = { iss_mode = "none" } }))))
    assert.equal(1, token_calls("good"))
  end)

  it("without an issuer, refuses an iss whose origin is not authorize_url's", function()
    local acct = connkit.integration {
      name = "No issuer", key = "noiss", auth = "oauth2", base_url = "{base}",
      parameters = { base = { required = true } },
      oauth2 = { authorize_url = "{base}/dis/good/authorize", token_url = "{base}/dis/good/token",
        client_id = "c1", client_secret = "s3cret-of-c1" },
    }:account { parameters = { base = sp.url } }
    local cb = callback(assert(acct:authorize_url { redirect_uri = REDIRECT, params = { iss_mode = "origin" } }))
    assert.equal("http://127.0.0.1:1/dis", query_of(cb).iss)
    local ok, err = acct:finish_authorization(cb)
    assert.is_nil(ok)
    assert.equal("issuer_mismatch", err.code)
    assert.equal(0, token_calls("good"))
    -- same origin: accepted
    assert(acct:finish_authorization(callback(assert(acct:authorize_url { redirect_uri = REDIRECT }))))
    assert.equal(1, token_calls("good"))
    -- no revoke_url and no issuer: nothing to call, the local tokens go
    assert.is_true(acct:status().authorized)
    assert.is_true(acct:revoke())
    assert.is_false(acct:status().authorized)
    assert.equal(0, count("/dis/good/revoke"))
  end)

  it("falls back to RFC 8414's location with the issuer's path inserted", function()
    local acct = account("oauth-only", { grant_type = "client_credentials" })
    assert(acct:token())
    assert.equal(1, count("/dis/oauth-only/.well-known/openid-configuration"))
    assert.equal(1, count("/.well-known/oauth-authorization-server/dis/oauth-only"))
    assert.equal(1, token_calls("oauth-only"))
    -- discovery = "openid" tries only the OpenID Connect location
    discovery.flush()
    local tok, err = account("oauth-only", { grant_type = "client_credentials", discovery = "openid" }, "o2"):token()
    assert.is_nil(tok)
    assert.equal("token_endpoint", err.code)
    assert.equal(404, err.status)
    assert.equal(1, token_calls("oauth-only"))
  end)

  it("reports a metadata fetch that fails with the network's code", function()
    local port = helpers.free_port()
    local acct = connkit.integration {
      name = "Gone", key = "gone", auth = "oauth2", base_url = "{issuer}",
      parameters = { issuer = { required = true } },
      oauth2 = { issuer = "{issuer}", grant_type = "client_credentials", client_id = "c1", client_secret = "s3cret-of-c1" },
    }:account { parameters = { issuer = "http://127.0.0.1:" .. port } }
    local tok, err = acct:token()
    assert.is_nil(tok)
    assert.equal("connect", err.code)
    assert.matches("metadata", err.message, 1, true)
  end)
end)
