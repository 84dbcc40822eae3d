-- JWT client authentication (RFC 7523 2.2, OpenID Connect Core 9):
-- oauth2.client_auth = "private_key_jwt" (RSA, EC P-256 and Ed25519 keys)
-- and "client_secret_jwt" against oidc-provider, whose extension
-- spec/oidc/ext/jwt_auth.mjs registers the clients with the public keys made
-- here and logs what each call carried (the assertion's header and claims,
-- and whether a client secret was sent).
local helpers = require "helpers"
local connkit = require "connkit"
local discovery = require "connkit.auth.discovery"

local q = helpers.shell_quote
local dir = helpers.tmpdir("jwtclient")
local CSJWT_SECRET = "csjwt-secret-0123456789-abcdefghij-XYZ" -- (spec/oidc/ext/jwt_auth.mjs)

require "support.test_keys"(dir, "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out wrong.pem"
  .. " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out p384.pem")
local function pem(name) return assert(helpers.read_file(dir .. "/" .. name .. ".pem")) end
-- the base64 body of a PEM: none of it may show anywhere
local function key_bits(text) return text:match("\n([%w+/=]+)\n") end

local op

local function log() return assert(op.get("/jwt-auth/log")) end
local function last(route)
  local l = log()
  for i = #l, 1, -1 do
    if l[i].route == route then return l[i] end
  end
end

-- An integration of the peer's private_key_jwt client (or another).
local function integration(o, params)
  local def = {
    name = "JWT client", key = "jwtclient", auth = "oauth2", base_url = "{issuer}",
    parameters = { issuer = { required = true }, clientKeyPem = { secret = true } },
    oauth2 = {
      grant_type = "client_credentials", token_url = "{issuer}/token", revoke_url = "{issuer}/token/revocation",
      client_id = "pkjwt-client", client_auth = "private_key_jwt", client_key = "{clientKeyPem}",
    },
  }
  for k, v in pairs(o or {}) do
    if v == false then def.oauth2[k] = nil else def.oauth2[k] = v end -- (false: left out)
  end
  for k, v in pairs(params or {}) do def.parameters[k] = v end
  return connkit.integration(def)
end

local function check_assertion(rec, alg, kid, client)
  client = client or "pkjwt-client"
  assert.equal("urn:ietf:params:oauth:client-assertion-type:jwt-bearer", rec.client_assertion_type)
  assert.equal(alg, rec.assertion_header.alg)
  assert.equal(kid, rec.assertion_header.kid)
  local c = rec.assertion_claims
  assert.equal(client, c.iss)
  assert.equal(client, c.sub)
  assert.equal(op.endpoints.token, c.aud)
  assert.is_string(c.jti)
  assert.is_true(#c.jti >= 16)
  assert.is_true(c.exp > c.iat and c.exp - c.iat <= 61)
  assert.is_true(math.abs(c.iat - os.time()) <= 5)
  assert.is_false(rec.client_secret_sent)
  assert.is_false(rec.basic_auth)
end

describe("JWT client authentication against oidc-provider", function()
  setup(function()
    op = helpers.peer("oidc").new { env = { JWT_AUTH_KEYS = dir } }
  end)
  teardown(function() if op then op.stop() end end)
  before_each(function()
    op.reset()
    assert(op.post("/jwt-auth/reset"))
    discovery.flush()
  end)

  for _, case in ipairs({ { "rsa", "rsa-1", "RS256" }, { "ec", "ec-1", "ES256" }, { "ed", "ed-1", "EdDSA" } }) do
    local file, kid, alg = case[1], case[2], case[3]
    it("private_key_jwt with an " .. file .. " key: " .. alg .. " from the key type, claims and kid as sent", function()
      local acct = integration({ client_key_id = kid }):account {
        parameters = { issuer = op.issuer, clientKeyPem = pem(file) } }
      local res = assert(acct:get("/api/me"))
      assert.equal(200, res.status)
      assert.equal("pkjwt-client", res:json().client_id)
      local first = last("token")
      assert.equal(200, first.status)
      assert.equal("client_credentials", first.grant_type)
      check_assertion(first, alg, kid)
      -- a new assertion for every call: another jti
      assert(acct:refresh())
      local second = last("token")
      assert.equal(200, second.status)
      check_assertion(second, alg, kid)
      assert.are_not.equal(first.assertion_claims.jti, second.assertion_claims.jti)
    end)
  end

  it("reads client_key_file, and an explicit client_key_alg (PS256) wins over the key type's", function()
    local acct = integration({ client_key = false, client_key_file = dir .. "/rsa.pem", client_key_alg = "PS256",
      client_key_id = "rsa-1" }):account { parameters = { issuer = op.issuer } }
    assert(acct:token())
    check_assertion(last("token"), "PS256", "rsa-1")
  end)

  it("takes the key from credentials.client_key", function()
    local integ = integration({ client_key = false, client_key_id = "ec-1" })
    assert.has_error(function() integ:account { parameters = { issuer = op.issuer } } end,
      'account \'jwtclient\' of integration \'jwtclient\': credentials.client_key is required: oauth2.client_auth is "private_key_jwt"'
      .. " and the integration sets no client_key or client_key_file")
    local acct = integ:account { parameters = { issuer = op.issuer }, credentials = { client_key = pem("ec") } }
    assert(acct:token())
    check_assertion(last("token"), "ES256", "ec-1")
  end)

  it("client_secret_jwt: HS256 with the client secret, which is never sent", function()
    local acct = integration({ client_id = "csjwt-client", client_auth = "client_secret_jwt", client_key = false,
      client_secret = "{secret}" }, { secret = { secret = true } }):account {
      parameters = { issuer = op.issuer, secret = CSJWT_SECRET } }
    assert.equal(200, assert(acct:get("/api/me")).status)
    local rec = last("token")
    assert.equal(200, rec.status)
    check_assertion(rec, "HS256", nil, "csjwt-client")
  end)

  it("client_secret_jwt: a secret under 32 bytes is refused at account creation, naming its field", function()
    local before = #log()
    local short = "short-secret-0123456789" -- 23 bytes
    local integ = integration({ client_id = "csjwt-client", client_auth = "client_secret_jwt", client_key = false })
    local ok, err = pcall(integ.account, integ, { parameters = { issuer = op.issuer },
      credentials = { client_secret = short } })
    assert.is_false(ok)
    assert.matches("credentials.client_secret is 23 bytes; client_auth = \"client_secret_jwt\" signs with HS256,"
      .. " whose key must be 32 bytes or more (RFC 7518 3.2)", tostring(err), 1, true)
    assert.is_nil(tostring(err):find(short, 1, true))
    -- the definition's secret, when the account gives none
    local def = integration({ client_id = "csjwt-client", client_auth = "client_secret_jwt", client_key = false,
      client_secret = "{secret}" }, { secret = { secret = true } })
    ok, err = pcall(def.account, def, { parameters = { issuer = op.issuer, secret = short } })
    assert.is_false(ok)
    assert.matches("oauth2.client_secret is 23 bytes", tostring(err), 1, true)
    assert.is_nil(tostring(err):find(short, 1, true))
    -- the account's own secret is the one used: a long one there is enough
    assert(def:account { parameters = { issuer = op.issuer, secret = short },
      credentials = { client_secret = CSJWT_SECRET } })
    assert.equal(before, #log()) -- nothing was sent
  end)

  it("with DPoP, a nonce challenge gets a new assertion: a jti is single-use (RFC 7523 3)", function()
    assert(op.post("/dpop-test/reset"))
    assert(op.post("/dpop-test/config", { token_nonce = "true" }))
    local acct = integration({ client_id = "csjwt-client", client_auth = "client_secret_jwt", client_key = false,
      client_secret = "{secret}", dpop = true }, { secret = { secret = true } }):account {
      parameters = { issuer = op.issuer, secret = CSJWT_SECRET } }
    local ok, err = acct:token()
    assert.is_truthy(ok, err and err.message)
    local t = assert(op.get("/dpop-test/log")).token
    assert.equal(2, #t)
    assert.equal("use_dpop_nonce", t[1].error)
    assert.equal(200, t[2].status)                  -- the server took the second assertion
    local jtis = {}
    for _, e in ipairs(log()) do
      if e.route == "token" then jtis[#jtis + 1] = e.assertion_claims.jti end
    end
    assert.equal(2, #jtis)
    assert.are_not.equal(jtis[1], jtis[2])
    assert(op.post("/dpop-test/config", { token_nonce = "false" }))
  end)

  it("authorization code, refresh, revocation and device authorization all send an assertion", function()
    local acct = integration({ grant_type = "authorization_code", authorize_url = "{issuer}/auth",
      device_authorization_url = "{issuer}/device/auth", scope = "openid offline_access",
      client_key_id = "ec-1" }):account { parameters = { issuer = op.issuer, clientKeyPem = pem("ec") } }
    local cb = assert(op.authorize(assert(acct:authorize_url { redirect_uri = op.endpoints.callback })))
    assert(acct:finish_authorization(cb))
    assert(acct:refresh())
    assert(acct:revoke())
    assert(acct:login_device { timeout = 30, on_code = function(_, code) assert(op.approve(code)) end })
    local seen = {}
    for _, rec in ipairs(log()) do
      assert.equal(200, rec.status)
      check_assertion(rec, "ES256", "ec-1")
      seen[#seen + 1] = rec.route .. (rec.grant_type and (" " .. rec.grant_type) or "")
    end
    assert.same({ "token authorization_code", "token refresh_token", "revocation", "device_authorization",
      "token urn:ietf:params:oauth:grant-type:device_code" }, seen)
    assert.equal(200, assert(acct:get("/api/me")).status)
  end)

  it("client_assertion_aud = \"issuer\" puts the issuer in aud", function()
    local acct = integration({ issuer = "{issuer}", client_assertion_aud = "issuer", client_key_id = "ed-1" })
      :account { parameters = { issuer = op.issuer, clientKeyPem = pem("ed") } }
    assert(acct:token())
    local rec = last("token")
    assert.equal(200, rec.status)
    assert.equal(op.issuer, rec.assertion_claims.aud)
  end)

  it("a key the server does not know: invalid_client, and no key material in the error", function()
    local wrong = pem("wrong")
    local acct = integration({ client_key_id = "ec-1" }):account {
      parameters = { issuer = op.issuer, clientKeyPem = wrong } }
    local tok, err = acct:token()
    assert.is_nil(tok)
    assert.equal("invalid_client", err.code)
    local rec = last("token")
    assert.equal(401, rec.status)
    assert.equal("ES256", rec.assertion_header.alg)
    for _, s in ipairs({ err.message, tostring(err), tostring(acct) }) do
      assert.is_nil(s:find(key_bits(wrong), 1, true))
      assert.is_nil(s:find("PRIVATE KEY", 1, true))
    end
  end)

  it("an alg that does not fit the key: err.code key naming client_key_alg, nothing sent", function()
    local acct = integration({ client_key_alg = "ES256" }):account {
      parameters = { issuer = op.issuer, clientKeyPem = pem("rsa") } }
    local tok, err = acct:token()
    assert.is_nil(tok)
    assert.equal("key", err.code)
    assert.matches("oauth2.client_key_alg is ES256, which does not fit the RSA key of oauth2.client_key", err.message, 1, true)
    assert.is_nil(last("token"))
    -- a P-384 key: only P-256 is supported
    acct = integration():account { parameters = { issuer = op.issuer, clientKeyPem = pem("p384") } }
    tok, err = acct:token()
    assert.equal("key", err.code)
    assert.matches("P-256", err.message, 1, true)
    -- not a key at all
    acct = integration():account { parameters = { issuer = op.issuer, clientKeyPem = "-----BEGIN PRIVATE KEY-----\nnotakey\n-----END PRIVATE KEY-----\n" } }
    tok, err = acct:token()
    assert.equal("key", err.code)
    assert.matches("^oauth2.client_key: ", err.message)
    assert.is_nil(err.message:find("notakey", 1, true))
    assert.is_nil(last("token"))
  end)
end)

describe("JWT client authentication: definition errors name the field", function()
  local function def_error(o, params)
    local ok, err = pcall(integration, o, params)
    assert.is_false(ok)
    return err
  end
  it("refuses what cannot work", function()
    assert.matches("oauth2.client_key uses {plain}, which is not declared secret = true",
      def_error({ client_key = "{plain}" }, { plain = {} }), 1, true)
    assert.matches('oauth2.client_key_alg must be one of "RS256", "PS256", "ES256", "EdDSA"',
      def_error({ client_key_alg = "HS256" }), 1, true)
    assert.matches('oauth2.client_key needs oauth2.client_auth = "private_key_jwt" or "client_secret_jwt"',
      def_error({ client_auth = "basic" }), 1, true)
    assert.matches("oauth2.client_key_file cannot be given with oauth2.client_key",
      def_error({ client_key_file = "/x.pem" }), 1, true)
    assert.matches('oauth2.client_assertion_aud is "issuer", but oauth2.issuer is not set',
      def_error({ client_assertion_aud = "issuer" }), 1, true)
    assert.matches('oauth2.client_assertion_aud must be "token_endpoint" or "issuer"',
      def_error({ client_assertion_aud = "everyone" }), 1, true)
    assert.matches("oauth2.client_key is for client_auth = \"private_key_jwt\"",
      def_error({ client_auth = "client_secret_jwt" }), 1, true)
    assert.matches("oauth2.client_auth must be one of", def_error({ client_auth = "jwt" }), 1, true)
  end)
end)
