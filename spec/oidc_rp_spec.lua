-- OpenID Connect relying party (OpenID Connect Core 1.0): the nonce of an
-- authorization request with `openid` in its scope, and the id_token of the
-- token reply validated before the tokens are accepted. Against
-- oidc-provider (loopback login, device flow, refresh; the nonce it received
-- is read from spec/oidc/ext/oidc_rp.mjs), and against a dishonest provider
-- (spec/scripted/routes/dishonest_oidc.js, id_tokens signed by node) for
-- what oidc-provider will not do. Every refusal: id_token_invalid, no token
-- kept (or the old one), the API never called, counted at the peer.
local helpers = require "helpers"
local connkit = require "connkit"
local discovery = require "connkit.auth.discovery"
local oidc = require "connkit.auth.oidc"

local function query_of(url)
  local t = {}
  for k, v in (url:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do
    t[k] = v:gsub("%+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  end
  return t
end

local function has(list, v)
  if type(list) ~= "table" then return list == v end
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

-- no value of a record looks like a JWT (the id_token itself is not kept)
local function no_jwt_in(t)
  for _, v in pairs(t) do
    if type(v) == "table" then no_jwt_in(v)
    elseif type(v) == "string" then assert.is_nil(v:find("^eyJ[%w_-]+%.[%w_-]+%.")) end
  end
end

describe("OpenID Connect against oidc-provider", function()
  local op
  setup(function() op = helpers.peer("oidc") end)
  before_each(function()
    op.reset()
    assert(op.post("/rp-test/reset"))
    discovery.flush()
    oidc.flush()
  end)

  local function account(id, scope, extra, store)
    local o = { issuer = "{issuer}", client_id = op.clients.public.id, client_auth = "none", scope = scope }
    for k, v in pairs(extra or {}) do o[k] = v end
    return connkit.integration {
      name = "OIDC RP", key = "oidcrp", auth = "oauth2", base_url = "{issuer}",
      parameters = { issuer = { required = true } }, oauth2 = o,
    }:account { id = id, parameters = { issuer = op.issuer }, store = store }
  end

  local function login(acct, opts)
    local browser, sent
    opts = opts or {}
    opts.timeout = 20
    opts.on_url = function(url)
      sent = query_of(url)
      browser = op.browse(url)
    end
    local ok, err = acct:login(opts)
    if browser then helpers.stop(browser) end
    return ok, err, sent
  end

  it("logs in with openid: a nonce is sent, the id_token validated, its claims kept", function()
    local dir = helpers.tmpdir("oidcrp")
    local core = require "connkit.core"
    local store = connkit.store.file(dir, { key = core.b64encode(core.random(32)) })
    local acct = account("rp1", "openid offline_access", nil, store)
    local ok, err, sent = login(acct)
    assert.is_nil(err)
    assert.is_true(ok)
    -- the nonce was in the authorization request the provider received
    assert.truthy(sent.nonce)
    assert.is_true(#sent.nonce >= 32)
    local seen = assert(op.get("/rp-test/authorizations"))
    assert.equal(1, #seen)
    assert.equal(sent.nonce, seen[1].nonce)
    assert.equal(op.clients.public.id, seen[1].client_id)
    local c = assert(acct:id_token_claims())
    assert.equal(op.user, c.sub)
    assert.equal(op.issuer, c.iss)
    assert.is_true(has(c.aud, op.clients.public.id))
    assert.equal(sent.nonce, c.nonce)
    assert.is_true(math.abs(c.iat - os.time()) < 30)
    -- kept in the record (claims, not the id_token), so a shared store shares them
    local rec = assert(store.get("rp1"))
    assert.equal(op.user, rec.id_token_claims.sub)
    no_jwt_in(rec)
    assert.equal(op.user, assert(account("rp1", "openid offline_access", nil, store):id_token_claims()).sub)
    -- a copy: changing it changes nothing
    c.sub = "someone"
    assert.equal(op.user, acct:id_token_claims().sub)
    -- the refresh reply's id_token (no nonce) is about the same user
    require("connkit.core").sleep(1.1)
    assert(acct:refresh())
    assert.equal("refresh_token", op.token_requests()[2].grant_type)
    local c2 = assert(acct:id_token_claims())
    assert.equal(op.user, c2.sub)
    -- a new id_token (issued later), not the first one kept
    assert.is_true(c2.iat > c.iat)
    assert.equal(200, assert(acct:get("/api/me")).status)
    os.execute("rm -rf " .. helpers.shell_quote(dir))
  end)

  it("sends a nonce when only the login call asks for openid", function()
    local acct = account("rp2", "offline_access")
    local ok, err, sent = login(acct, { scope = "openid offline_access" })
    assert.is_nil(err)
    assert.is_true(ok)
    assert.truthy(sent.nonce)
    assert.equal(sent.nonce, assert(acct:id_token_claims()).nonce)
    assert.equal(sent.nonce, op.get("/rp-test/authorizations")[1].nonce)
  end)

  it("validates the id_token of a device flow (no nonce)", function()
    local acct = account("rp4", "openid offline_access")
    local ok, err = acct:login_device { timeout = 30, on_code = function(_, code) assert(op.approve(code)) end }
    assert.is_nil(err)
    assert.is_true(ok)
    local c = assert(acct:id_token_claims())
    assert.equal(op.user, c.sub)
    assert.is_nil(c.nonce)
  end)

  it("refuses a real provider's id_token whose alg the definition does not accept, storing nothing", function()
    local store = connkit.store.memory()
    local acct = account("rp5", "openid offline_access", { id_token_signed_response_alg = "ES256" }, store)
    local ok, err = login(acct)
    assert.is_nil(ok)
    assert.equal("id_token_invalid", err.code)
    -- (its metadata lists only RS256)
    assert.matches("no alg both connkit and the issuer's metadata accept", err.message, 1, true)
    assert.equal(1, op.stats().token.total) -- the token endpoint was asked, once
    assert.is_nil(store.get("rp5"))
    assert.is_false(acct:status().authorized)
    local res, rerr = acct:get("/api/me")
    assert.is_nil(res)
    assert.equal("reauthorize", rerr.code)
    assert.equal(0, op.stats().api.total)
  end)
end)

describe("OpenID Connect against a dishonest provider", function()
  local sp, issuer
  setup(function()
    sp = helpers.peer("scripted")
    issuer = sp.url .. "/doidc"
  end)
  before_each(function()
    sp.reset()
    assert(sp.request("POST", "/doidc/forget"))
    discovery.flush()
    oidc.flush()
  end)

  local function account(id, store, extra)
    local o = { issuer = "{issuer}", client_id = "rp-client", client_secret = "rp-s3cret", scope = "openid" }
    for k, v in pairs(extra or {}) do o[k] = v end
    return connkit.integration {
      name = "Dishonest OIDC", key = "doidc", auth = "oauth2", base_url = "{base}",
      parameters = { issuer = { required = true }, base = { required = true } }, oauth2 = o,
    }:account { id = id, parameters = { issuer = issuer, base = sp.url }, store = store or connkit.store.memory() }
  end

  -- authorize (the provider puts the nonce it received and the mode into
  -- the code), then finish_authorization with the redirect it answered
  local function login(acct, mode, refresh_mode)
    local url = assert(acct:authorize_url { redirect_uri = "http://127.0.0.1:9/cb",
      params = { mode = mode, refresh_mode = refresh_mode } })
    local ok, out = helpers.run(("curl -sS -g --max-time 10 -o /dev/null -w '%%{redirect_url}' %s")
      :format(helpers.shell_quote(url)))
    assert(ok, out)
    local cb = out:match("(%S+)%s*$")
    local ok2, err = acct:finish_authorization(cb)
    return ok2, err, query_of(url).nonce
  end

  local function count(path) return #sp.requests("/doidc/" .. path) end

  for _, mode in ipairs({ "good", "ps256", "es256", "eddsa", "multi_aud_azp", "at_hash", "es256_at_hash" }) do
    it("accepts a good id_token (" .. mode .. ")", function()
      local acct = account("ok-" .. mode)
      local ok, _, nonce = login(acct, mode)
      assert.is_true(ok)
      local c = assert(acct:id_token_claims())
      assert.equal("user-1", c.sub)
      assert.equal(issuer, c.iss)
      assert.equal(nonce, c.nonce)
      assert.equal(nonce, sp.requests("/doidc/authorize")[1].query.nonce) -- as the provider received it
      assert.equal(1, count("jwks"))
      assert.equal(200, assert(acct:get("/doidc/api")).status)
    end)
  end

  local REFUSED = {
    { "none", "alg none" },
    { "hs256_pub", "alg 'HS256' is not allowed" },
    { "wrong_aud", "does not include the expected audience" },
    { "multi_aud", "several audiences and no azp" },
    { "wrong_azp", "azp is 'other-client'" },
    { "expired", "expired" },
    { "iat_future", "issued in the future" },
    { "bad_sig", "bad signature" },
    { "no_nonce", "nonce is missing" },
    { "wrong_nonce", "nonce does not match" },
    { "wrong_iss", "iss is '" },
    { "no_id_token", "the token reply has none" },
    { "wrong_at_hash", "at_hash does not match the access token" },
  }
  for _, case in ipairs(REFUSED) do
    local mode, why = case[1], case[2]
    it("refuses an id_token: " .. mode .. ", and keeps no token", function()
      local store = connkit.store.memory()
      local acct = account("bad-" .. mode, store)
      local ok, err = login(acct, mode)
      assert.is_nil(ok)
      assert.equal("id_token_invalid", err.code)
      assert.matches(why, err.message, 1, true)
      assert.is_nil(err.message:find("eyJ", 1, true)) -- no token in the message
      assert.equal(1, count("token"))
      assert.is_nil(store.get("bad-" .. mode))
      assert.is_false(acct:status().authorized)
      assert.is_nil(acct:id_token_claims())
      local res, rerr = acct:get("/doidc/api")
      assert.is_nil(res)
      assert.equal("reauthorize", rerr.code)
      assert.equal(0, count("api"))
    end)
  end

  it("sends no nonce and wants no id_token without openid in the scope", function()
    local acct = account("plain", nil, { scope = "profile" })
    local ok, err, nonce = login(acct, "no_id_token")
    assert.is_nil(err)
    assert.is_true(ok)
    assert.is_nil(nonce)
    assert.is_nil(sp.requests("/doidc/authorize")[1].query.nonce)
    local none, nerr = acct:id_token_claims()
    assert.is_nil(none)
    assert.equal("no_token", nerr.code)
    assert.equal(0, count("jwks"))
  end)

  it("keeps the old record when a new login's id_token is refused", function()
    local store = connkit.store.memory()
    local acct = account("keep", store)
    local ok, _, nonce = login(acct, "good")
    assert.is_true(ok)
    local before = store.get("keep")
    local bad, err = login(acct, "wrong_aud")
    assert.is_nil(bad)
    assert.equal("id_token_invalid", err.code)
    assert.same(before, store.get("keep"))
    assert.equal(nonce, acct:id_token_claims().nonce)
    assert.equal(200, assert(acct:get("/doidc/api")).status)
    assert.equal(2, count("token"))
  end)

  it("fetches the JWKS again once for a rotated key", function()
    local acct = account("rot")
    assert.is_true((login(acct, "good")))
    assert.equal(1, count("jwks"))
    -- signed with a key the cached JWKS lacks: one refetch finds it
    assert.is_true((login(acct, "rotated")))
    assert.equal(2, count("jwks"))
    assert.equal("user-1", acct:id_token_claims().sub)
    -- the refetched set is the one kept
    assert.is_true((login(acct, "rotated")))
    assert.equal(2, count("jwks"))
  end)

  it("fetches the JWKS again only once for a kid never published", function()
    local acct = account("unk")
    assert.is_true((login(acct, "good")))
    local ok, err = login(acct, "unknown_kid")
    assert.is_nil(ok)
    assert.equal("id_token_invalid", err.code)
    assert.matches("no key with kid 'rsa-never'", err.message, 1, true)
    assert.equal(2, count("jwks")) -- the first login's, and one refetch
    -- with nothing cached, the one fetch is all
    oidc.flush()
    local fresh = account("unk2")
    ok, err = login(fresh, "unknown_kid")
    assert.is_nil(ok)
    assert.equal("id_token_invalid", err.code)
    assert.equal(3, count("jwks"))
  end)

  it("on a refresh, refuses an id_token about another user and keeps the old tokens", function()
    local store = connkit.store.memory()
    local acct = account("ref", store)
    assert.is_true((login(acct, "good", "other_sub")))
    local before = store.get("ref")
    local ok, err = acct:refresh()
    assert.is_nil(ok)
    assert.equal("id_token_invalid", err.code)
    assert.matches("sub differs from the first id_token's", err.message, 1, true)
    assert.same(before, store.get("ref"))
    assert.equal("user-1", acct:id_token_claims().sub)
    assert.equal(2, count("token"))
  end)

  it("on a refresh, validates a new id_token (no nonce needed) or keeps the first claims", function()
    local acct = account("ref2")
    assert.is_true((login(acct, "good", "good")))
    assert(acct:refresh())
    local c = acct:id_token_claims()
    assert.equal("user-1", c.sub)
    assert.is_nil(c.nonce) -- the refresh reply's id_token
    local acct3 = account("ref3")
    local _, _, nonce = login(acct3, "good", "no_id_token")
    assert(acct3:refresh())
    assert.equal(2, count("token") - 2) -- (two logins, two refreshes)
    assert.equal("user-1", acct3:id_token_claims().sub)
    assert.equal(nonce, acct3:id_token_claims().nonce) -- the first id_token's claims, kept
  end)

  it("needs a jwks_uri: refused before the user is sent anywhere", function()
    local acct = connkit.integration {
      name = "No JWKS", key = "nojwks", auth = "oauth2", base_url = sp.url,
      oauth2 = { issuer = issuer, discovery = false, authorize_url = issuer .. "/authorize",
        token_url = issuer .. "/token", client_id = "rp-client", client_auth = "none", scope = "openid" },
    }:account { id = "nojwks" }
    local url, err = acct:authorize_url { redirect_uri = "http://127.0.0.1:9/cb" }
    assert.is_nil(url)
    assert.equal("config", err.code)
    assert.matches("oauth2.jwks_uri", err.message, 1, true)
    -- with it set explicitly, no discovery is needed
    local acct2 = connkit.integration {
      name = "JWKS", key = "jwksset", auth = "oauth2", base_url = sp.url,
      oauth2 = { issuer = issuer, discovery = false, authorize_url = issuer .. "/authorize",
        token_url = issuer .. "/token", jwks_uri = issuer .. "/jwks", client_id = "rp-client", client_auth = "none", scope = "openid" },
    }:account { id = "jwksset" }
    assert.is_true((login(acct2, "es256")))
    assert.equal(0, count(".well-known/openid-configuration"))
  end)

  it("refuses the id_token when the JWK Set cannot be had, storing nothing", function()
    local store = connkit.store.memory()
    local acct = account("nokeys", store, { jwks_uri = issuer .. "/no-such-jwks" })
    local ok, err = login(acct, "good")
    assert.is_nil(ok)
    assert.equal("id_token_invalid", err.code)
    assert.matches("JWK Set " .. issuer .. "/no-such-jwks answered 404", err.message, 1, true)
    assert.equal(1, count("no-such-jwks"))
    assert.is_nil(store.get("nokeys"))
    assert.equal(0, count("jwks"))
  end)

  it("checks the new oauth2 fields, naming them", function()
    local function def(o)
      o.issuer, o.client_id = "https://idp.test", "x"
      return { name = "D", key = "d", auth = "oauth2", base_url = "https://api.test", oauth2 = o }
    end
    local ok, msg = pcall(connkit.integration, def { id_token_signed_response_alg = "HS256" })
    assert.is_false(ok)
    assert.matches("oauth2.id_token_signed_response_alg", msg, 1, true)
    ok, msg = pcall(connkit.integration, def { jwks_uri = "http://idp.test/jwks" })
    assert.is_false(ok)
    assert.matches("oauth2.jwks_uri", msg, 1, true)
  end)
end)
