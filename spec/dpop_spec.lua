-- DPoP (RFC 9449) against oidc-provider (features.dPoP, spec/oidc/ext/dpop.mjs):
-- DPoP-bound tokens for client credentials and a loopback login, a fresh
-- proof on every API transfer (the peer verifies htm, htu, ath, jti, iat and
-- the key against the token's jkt), the nonce challenges of the token
-- endpoint and of the resource, the ath after a refresh, the key kept in a
-- file store across account objects, and the key never shown.
local helpers = require "helpers"
local connkit = require "connkit"
local core = require "connkit.core"
local dpop = require "connkit.auth.dpop"
local discovery = require "connkit.auth.discovery"

local op
local n = 0

local function log() return assert(op.get("/dpop-test/log")) end
local function peer_token(token) return assert(op.get("/dpop-test/tokens?token=" .. core.escape(token, "query"))) end
local function config(t) return assert(op.post("/dpop-test/config", t)) end

local function cc_integration(extra)
  n = n + 1
  local o = { grant_type = "client_credentials", token_url = "{issuer}/token",
    client_id = op.clients.cc.id, client_secret = op.clients.cc.secret, dpop = true }
  for k, v in pairs(extra or {}) do o[k] = v end
  return connkit.integration {
    name = "DPoP cc " .. n, key = "dpopcc" .. n, auth = "oauth2",
    base_url = "{issuer}", parameters = { issuer = { required = true } }, oauth2 = o,
  }
end

describe("DPoP against oidc-provider", function()
  setup(function() op = helpers.peer("oidc") end)
  before_each(function()
    op.reset()
    assert(op.post("/dpop-test/reset"))
    dpop.flush()
    discovery.flush()
  end)

  it("client credentials: a DPoP-bound token (cnf.jkt = the account key's thumbprint) and verified proofs", function()
    local acct = cc_integration():account { parameters = { issuer = op.issuer } }
    local res = assert(acct:get("/api/dpop?x=1#frag"))
    assert.equal(200, res.status, res.body)
    local jkt = assert(dpop.thumbprint(acct))
    assert.equal(jkt, res:json().jkt)
    local l = log()
    assert.equal(1, #l.token)
    assert.equal("DPoP", l.token[1].token_type)
    assert.equal(jkt, l.token[1].proof_jkt)
    assert.equal("dpop+jwt", l.token[1].proof.typ)
    assert.equal("ES256", l.token[1].proof.alg)
    assert.equal("POST", l.token[1].proof.htm)
    assert.equal(op.issuer .. "/token", l.token[1].proof.htu)
    assert.is_nil(l.token[1].proof.ath)
    assert.is_false(l.token[1].proof.has_private)
    local token = assert(acct:token())
    assert.equal(jkt, peer_token(token).jkt)
    assert.equal("dpop", acct:status().token_type)
    -- a second request: another proof (new jti), same key, the right ath
    assert.equal(200, assert(acct:post("/api/dpop", { json = { a = 1 } })).status)
    l = log()
    assert.equal(2, #l.api)
    for i, a in ipairs(l.api) do
      assert.equal("DPoP", a.scheme)
      assert.equal(200, a.status, a.error_description)
      for k, ok in pairs(a.checks) do assert.is_true(ok, "check " .. k .. " of request " .. i) end
      assert.equal(op.issuer .. "/api/dpop", a.proof.htu)
    end
    assert.equal("GET", l.api[1].proof.htm)
    assert.equal("POST", l.api[2].proof.htm)
    assert.are_not.equal(l.api[1].proof.jti, l.api[2].proof.jti)
    assert.equal(core.b64url_encode(core.sha256(token)), l.api[1].proof.ath)
  end)

  it("a redirect on the same origin gets a proof of its own (htu of the new URL)", function()
    local acct = cc_integration():account { parameters = { issuer = op.issuer } }
    local res = assert(acct:get("/api/dpop-redirect", { follow = true }))
    assert.equal(200, res.status, res.body)
    local l = log()
    assert.equal(2, #l.api)
    assert.equal(op.issuer .. "/api/dpop-redirect", l.api[1].proof.htu)
    assert.equal(op.issuer .. "/api/dpop", l.api[2].proof.htu)
    assert.are_not.equal(l.api[1].proof.jti, l.api[2].proof.jti)
    for k, ok in pairs(l.api[2].checks) do assert.is_true(ok, k) end
  end)

  it("EdDSA keys with dpop_alg", function()
    local acct = cc_integration({ dpop_alg = "EdDSA" }):account { parameters = { issuer = op.issuer } }
    assert.equal(200, assert(acct:get("/api/dpop")).status)
    local l = log()
    assert.equal("EdDSA", l.token[1].proof.alg)
    assert.equal("OKP", l.api[1].proof.jwk_kty)
  end)

  it("follows the token endpoint's use_dpop_nonce challenge with one retry carrying the nonce", function()
    config { token_nonce = "true" }
    local acct = cc_integration():account { parameters = { issuer = op.issuer } }
    assert.equal(200, assert(acct:get("/api/dpop")).status)
    local t = log().token
    assert.equal(2, #t)
    assert.equal(400, t[1].status)
    assert.equal("use_dpop_nonce", t[1].error)
    assert.is_nil(t[1].proof.nonce)
    assert.is_string(t[1].dpop_nonce_sent)
    assert.equal(200, t[2].status)
    assert.equal(t[1].dpop_nonce_sent, t[2].proof.nonce)
    -- the nonce is remembered: the next token request carries it at once
    assert(acct:refresh())
    t = log().token
    assert.equal(3, #t)
    assert.equal(200, t[3].status)
    assert.is_string(t[3].proof.nonce)
  end)

  it("follows the resource's use_dpop_nonce challenge with one retry, no token refresh", function()
    local acct = cc_integration():account { parameters = { issuer = op.issuer } }
    assert(acct:token())
    local nonce = config({ api_nonce = "true" }).api_nonce
    local res = assert(acct:get("/api/dpop"))
    assert.equal(200, res.status, res.body)
    assert.equal(1, res.attempts or 1)
    local l = log()
    assert.equal(1, #l.token) -- not refreshed
    assert.equal(2, #l.api)
    assert.equal("use_dpop_nonce", l.api[1].error)
    assert.are_not.equal(nonce, l.api[1].proof.nonce)
    assert.equal(nonce, l.api[2].proof.nonce)
    -- remembered for the origin: the next request goes through at once
    assert.equal(200, assert(acct:get("/api/dpop")).status)
    assert.equal(3, #log().api)
    -- and the same over a non-blocking handle
    config { api_nonce = "true" }
    local h = acct:prepare { url = "/api/dpop" }:start()
    while not h:done() do connkit.poll(0.05) end
    assert.equal(200, assert(h:result()).status)
    l = log()
    assert.equal(5, #l.api)
    assert.equal("use_dpop_nonce", l.api[4].error)
    assert.equal(200, l.api[5].status)
    assert.equal(1, #l.token)
  end)

  it("a loopback login gets a DPoP-bound token; after a refresh the proofs carry the new token's ath", function()
    local acct = connkit.integration {
      name = "DPoP login", key = "dpoplogin", auth = "oauth2", base_url = "{issuer}",
      parameters = { issuer = { required = true } },
      oauth2 = { issuer = "{issuer}", client_id = op.clients.public.id, client_auth = "none", dpop = true,
        scope = "openid offline_access", extra_params = { resource = "{issuer}/api" },
        authorize_params = { resource = "{issuer}/api" } },
    }:account { id = "dpoplogin", parameters = { issuer = op.issuer } }
    local browser
    local ok, err = acct:login { timeout = 20, on_url = function(url) browser = op.browse(url) end }
    helpers.stop(browser)
    assert.is_nil(err)
    assert.is_true(ok)
    local jkt = assert(dpop.thumbprint(acct))
    local old = assert(acct:token())
    assert.equal(jkt, peer_token(old).jkt)
    assert.equal(200, assert(acct:get("/api/dpop")).status)
    assert(acct:refresh()) -- (oidc-provider binds a public client's refresh token to the key too)
    local new = assert(acct:token())
    assert.are_not.equal(old, new)
    assert.equal(jkt, peer_token(new).jkt)
    assert.equal(200, assert(acct:get("/api/dpop")).status)
    local l = log()
    assert.equal("authorization_code", l.token[1].grant_type)
    -- revoked: the key goes with the tokens; a new login makes a new one
    assert(acct:revoke())
    browser = nil
    ok, err = acct:login { timeout = 20, on_url = function(url) browser = op.browse(url) end }
    helpers.stop(browser)
    assert.is_true(ok, err and err.message)
    assert.are_not.equal(jkt, assert(dpop.thumbprint(acct)))
    assert.equal(assert(dpop.thumbprint(acct)), peer_token(assert(acct:token())).jkt)
    assert.equal("refresh_token", l.token[2].grant_type)
    assert.equal(jkt, l.token[2].proof_jkt)
    assert.equal(op.sha256(new), l.api[2].token_sha256)
    assert.equal(core.b64url_encode(core.sha256(new)), l.api[2].proof.ath)
    assert.is_true(l.api[2].checks.ath)
  end)

  it("binds the authorization code to the key (dpop_jkt): redeemed with another key, the server refuses it", function()
    local function account(id)
      return connkit.integration {
        name = "DPoP jkt", key = "dpopjkt", auth = "oauth2", base_url = "{issuer}",
        parameters = { issuer = { required = true } },
        oauth2 = { issuer = "{issuer}", client_id = op.clients.public.id, client_auth = "none", dpop = true,
          scope = "openid", extra_params = { resource = "{issuer}/api" },
          authorize_params = { resource = "{issuer}/api" } },
      }:account { id = id, parameters = { issuer = op.issuer } }
    end
    local acct = account("dpopjkt1")
    local browser, sent
    local ok, err = acct:login { timeout = 20, on_url = function(url)
      sent = url
      browser = op.browse(url)
    end }
    helpers.stop(browser)
    assert.is_true(ok, err and err.message)
    local jkt = assert(dpop.thumbprint(acct))
    assert.equal(jkt, sent:match("[?&]dpop_jkt=([^&]+)")) -- (base64url: nothing to unescape)
    assert.equal(jkt, peer_token(assert(acct:token())).jkt)
    -- the key changes between the authorization and the code's redemption
    local other = account("dpopjkt2")
    browser = nil
    ok, err = other:login { timeout = 20, on_url = function(url)
      browser = op.browse(url)
      dpop.forget(other) -- (the token request makes a new key)
    end }
    helpers.stop(browser)
    assert.is_nil(ok)
    assert.equal("invalid_grant", err.code)
    assert.is_false(other:status().authorized)
    local refused = log().token[2]
    assert.equal("invalid_grant", refused.error)
    assert.equal("DPoP proof key thumbprint does not match dpop_jkt", refused.error_detail)
    assert.equal(assert(dpop.thumbprint(other)), refused.proof_jkt) -- the new key's proof
  end)

  it("a refused token (on_status) is refreshed and the retry carries the new token's ath", function()
    local acct = cc_integration():account { parameters = { issuer = op.issuer } }
    local old = assert(acct:token())
    assert.is_true(op.invalidate(old))
    local res = assert(acct:get("/api/dpop"))
    assert.equal(200, res.status)
    local new = assert(acct:token())
    assert.are_not.equal(old, new)
    local l = log()
    assert.equal(2, #l.api)
    assert.equal(401, l.api[1].status)
    assert.equal(200, l.api[2].status)
    assert.equal(core.b64url_encode(core.sha256(new)), l.api[2].proof.ath)
  end)

  it("keeps the key in a file store, encrypted: another account object on the store uses the same key", function()
    local dir = helpers.tmpdir("dpop")
    local key = core.b64encode(core.random(32))
    local integ = cc_integration()
    local a = integ:account { id = "kept", parameters = { issuer = op.issuer }, store = connkit.store.file(dir, { key = key }) }
    assert.equal(200, assert(a:get("/api/dpop")).status)
    local jkt = assert(dpop.thumbprint(a))
    for f in io.popen("ls " .. dir):lines() do
      local data = helpers.read_file(dir .. "/" .. f) or ""
      assert.is_nil(data:find("PRIVATE KEY", 1, true), f)
    end
    -- a fresh object (as a new process would make) reads the key from the store
    local b = integ:account { id = "kept", parameters = { issuer = op.issuer }, store = connkit.store.file(dir, { key = key }) }
    assert.equal(jkt, assert(dpop.thumbprint(b)))
    assert(b:refresh())
    assert.equal(200, assert(b:get("/api/dpop")).status)
    assert.equal(jkt, peer_token(assert(b:token())).jkt)
    local l = log()
    assert.equal(2, #l.token)
    assert.equal(jkt, l.token[2].proof_jkt)
    -- and a new process
    -- (child_env: under make test-asan the child needs the sanitizer runtime too)
    local words = {}
    for k, v in pairs(helpers.child_env()) do words[#words + 1] = k .. "=" .. helpers.shell_quote(v) end
    local ok, out = helpers.run(("cd %s && env %s %s -e %s"):format(helpers.shell_quote(helpers.root),
      table.concat(words, " "), helpers.lua, helpers.shell_quote(([[
      local connkit = require "connkit"
      local a = connkit.integration { name = "x", key = "dpopcc%d", auth = "oauth2", base_url = %q,
        oauth2 = { grant_type = "client_credentials", token_url = %q, client_id = %q, client_secret = %q, dpop = true } }
        :account { id = "kept", store = connkit.store.file(%q, { key = %q }) }
      io.write("jkt=", require("connkit.auth.dpop").thumbprint(a), " status=", a:get("/api/dpop").status, "\n")
    ]]):format(n, op.issuer, op.issuer .. "/token", op.clients.cc.id, op.clients.cc.secret, dir, key))))
    assert(ok, out)
    assert.equal("jkt=" .. jkt .. " status=200", out:match("jkt=%S+ status=%d+"))
  end)

  it("never shows the key: errors, tostring, hooks, status", function()
    local seen = {}
    local function collect(v)
      if type(v) == "table" then for k, x in pairs(v) do collect(k); collect(x) end
      else seen[#seen + 1] = tostring(v) end
    end
    local acct = cc_integration():account { parameters = { issuer = op.issuer },
      on_request = collect, on_response = collect, on_token = function(_, info) collect(info) end }
    assert.equal(200, assert(acct:get("/api/dpop")).status)
    local pem = acct._dpop_pem
    assert.truthy(pem:find("PRIVATE KEY", 1, true))
    local req = assert(acct:prepare { url = "/api/dpop" })
    collect(tostring(req)); collect(tostring(acct)); collect(acct:status())
    -- an error from the token endpoint (a client that is refused)
    local bad = cc_integration({ client_secret = "wrong" }):account { parameters = { issuer = op.issuer } }
    local _, err = bad:get("/api/dpop")
    assert.is_table(err)
    collect(err.message); collect(tostring(err))
    local all = table.concat(seen, "\n")
    assert.is_nil(all:find("PRIVATE", 1, true))
    local body = pem:match("%-%-%-%-%-\n(.-)\n")
    assert.is_nil(all:find(body:sub(1, 20), 1, true))
    assert.truthy(acct:_redact("x " .. pem):find("***", 1, true))
  end)

  it("with an issuer, an explicit dpop_alg the metadata does not list is refused before any token request", function()
    n = n + 1
    local acct = connkit.integration {
      name = "DPoP disc", key = "dpopdisc" .. n, auth = "oauth2", base_url = "{issuer}",
      parameters = { issuer = { required = true } },
      oauth2 = { issuer = "{issuer}", grant_type = "client_credentials", dpop = true, dpop_alg = "RS256",
        client_id = op.clients.cc.id, client_secret = op.clients.cc.secret },
    }:account { parameters = { issuer = op.issuer } }
    local res, err = acct:get("/api/dpop")
    assert.is_nil(res)
    assert.equal("config", err.code)
    assert.truthy(err.message:find("dpop_signing_alg_values_supported", 1, true))
    assert.equal(0, #log().token)
    assert.equal(0, op.stats().token.total)
  end)

  it("refuses a Bearer token reply: nothing stored, no API request made", function()
    local sp = helpers.peer("scripted")
    n = n + 1
    local acct = connkit.integration {
      name = "DPoP bearer", key = "dpopbearer" .. n, auth = "oauth2", base_url = sp.url,
      oauth2 = { grant_type = "client_credentials", token_url = sp.url .. "/token/ok?mark=dpopb" .. n,
        client_id = "c", client_secret = "s", dpop = true },
    }:account {}
    local res, err = acct:get("/resource?mark=dpopb" .. n)
    assert.is_nil(res)
    assert.equal("token_endpoint", err.code)
    assert.truthy(err.message:find("not a DPoP-bound one", 1, true))
    local function marked(path)
      local mine = {}
      for _, r in ipairs(sp.requests(path)) do if r.query.mark == "dpopb" .. n then mine[#mine + 1] = r end end
      return mine
    end
    local toks = marked("/token/ok")
    assert.equal(1, #toks)
    assert.is_string(toks[1].headers.dpop) -- (the proof was sent)
    assert.equal(0, #marked("/resource"))
    assert.is_false(acct:status().authorized)
  end)

  it("definitions that do not fit dpop are refused, naming the field", function()
    assert.has_error(function() cc_integration({ dpop_alg = "HS256" }) end)
    local ok, msg = pcall(connkit.integration, {
      name = "x", key = "dpopbad", auth = "oauth2", base_url = "https://a.test",
      oauth2 = { grant_type = "client_credentials", token_url = "https://a.test/t", client_id = "c", dpop = true },
      auth_token = { value = "Bearer {token}" } })
    assert.is_false(ok)
    assert.truthy(tostring(msg):find("auth_token.value", 1, true))
    ok, msg = pcall(connkit.integration, {
      name = "x", key = "dpopbad", auth = "oauth2", base_url = "https://a.test",
      oauth2 = { grant_type = "client_credentials", token_url = "https://a.test/t", client_id = "c", dpop_alg = "ES256" } })
    assert.is_false(ok)
    assert.truthy(tostring(msg):find("oauth2.dpop_alg", 1, true))
  end)
end)
