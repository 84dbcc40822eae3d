-- A JWT as the credential: auth = "jwt" (the JWT is the bearer token,
-- checked by what httpbin received, its signature verified with node's
-- crypto), its renewal before expiry; oauth2.grant_type = "jwt_bearer"
-- (RFC 7523 2.1) against oidc-provider's grant hook
-- (spec/oidc/ext/jwt_auth.mjs); and {jwt} in a custom_token header against
-- a GitHub App installation token endpoint (spec/scripted/routes/github_app.js).
local helpers = require "helpers"
local connkit = require "connkit"
local core = require "connkit.core"
local cjson = require "cjson"
local discovery = require "connkit.auth.discovery"

local q = helpers.shell_quote
local dir = helpers.tmpdir("jwtauth")
local NODE = q(helpers.root .. "/spec/support/jws_node.js")
local SECRET = "hs256-jwt-auth-secret-of-32-bytes!!"
local PASSWORD = "pw-jwt-Auth-Sekr3t"

local sh = helpers.sh
require "support.test_keys"(dir, "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out wrong.pem 2>/dev/null"
  .. " && openssl pkcs8 -topk8 -v2 aes-256-cbc -in ec.pem -passout pass:" .. q(PASSWORD) .. " -out ec_enc.pem"
  .. " && printf %s " .. q(SECRET) .. " > secret.txt")
local function pem(name) return assert(helpers.read_file(dir .. "/" .. name .. ".pem")) end
local function key_bits(text) return text:match("\n([%w+/=]+)\n") end

local function b64json(part) return cjson.decode((assert(core.b64url_decode(part)))) end

-- header, claims of a JWT after node's crypto verified its signature with
-- the public key in `keyfile` (or the secret file for HS256)
local function node_verified(token, alg, keyfile)
  local h, p, s = token:match("^([^.]+)%.([^.]+)%.([^.]+)$")
  assert(h, "not a compact JWS")
  helpers.write_file(dir .. "/data", h .. "." .. p)
  local out = sh(("node %s verify %s %s %s %s"):format(NODE, alg, q(dir .. "/" .. keyfile), q(dir .. "/data"), q(s)))
  assert.equal("ok", out)
  return b64json(h), b64json(p)
end

local function bearer_of(res)
  local auth = assert(res:json().headers.Authorization)
  return assert(auth:match("^Bearer (.+)$"))
end

describe('auth = "jwt" against httpbin', function()
  local hb
  setup(function() hb = helpers.peer("httpbin") end)

  local function appstore(jwt_block, extra)
    local def = {
      name = "App Store Connect", key = "appstore", auth = "jwt", base_url = hb.url,
      parameters = { issuerId = { required = true }, keyId = { required = true }, privateKey = { secret = true },
        keyPassword = { secret = true } },
      jwt = { key = "{privateKey}", key_id = "{keyId}", ttl = 1200,
        claims = { iss = "{issuerId}", aud = "appstoreconnect-v1", scope = { "GET /v1/apps" } } },
    }
    for k, v in pairs(jwt_block or {}) do
      if v == false then def.jwt[k] = nil else def.jwt[k] = v end
    end
    for k, v in pairs(extra or {}) do
      if v == false then def[k] = nil else def[k] = v end
    end
    return connkit.integration(def)
  end
  local PARAMS = { issuerId = "57246542-96fe-1a63-e053-0824d011072a", keyId = "2X9R4HXF34", privateKey = pem("ec") }

  it("sends a JWT signed with the key (ES256 from the key type), carrying the claims, kid, iat and exp", function()
    local acct = appstore():account { parameters = PARAMS }
    local res = assert(acct:get("/headers"))
    assert.equal(200, res.status)
    local token = bearer_of(res)
    local header, claims = node_verified(token, "ES256", "ec.pub")
    assert.same({ alg = "ES256", kid = "2X9R4HXF34", typ = "JWT" }, header)
    assert.equal(PARAMS.issuerId, claims.iss)
    assert.equal("appstoreconnect-v1", claims.aud)
    assert.same({ "GET /v1/apps" }, claims.scope)
    assert.equal(1200, claims.exp - claims.iat)
    assert.is_true(math.abs(claims.iat - os.time()) <= 5)
    assert.is_nil(claims.jti)
    -- the same JWT until it is due, and token() gives it
    assert.equal(token, bearer_of(assert(acct:get("/headers"))))
    assert.equal(token, assert(acct:token()))
    local st = acct:status()
    assert.is_true(st.authorized)
    assert.is_true(st.expires_in > 1100 and st.expires_in <= 1200)
    assert.is_nil(tostring(acct):find(key_bits(PARAMS.privateKey), 1, true))
  end)

  it("RSA (RS256) from key_file, Ed25519 (EdDSA), and HS256 with a secret; jti and backdate on request", function()
    local acct = appstore({ key = false, key_file = dir .. "/rsa.pem", jti = true, backdate = 60 })
      :account { parameters = { issuerId = "i", keyId = "k" } }
    local h, c = node_verified(bearer_of(assert(acct:get("/headers"))), "RS256", "rsa.pub")
    assert.equal("RS256", h.alg)
    assert.is_string(c.jti)
    assert.equal(1260, c.exp - c.iat)
    assert.is_true(math.abs(c.iat + 60 - os.time()) <= 5)
    acct = appstore():account { parameters = { issuerId = "i", keyId = "k", privateKey = pem("ed") } }
    h = node_verified(bearer_of(assert(acct:get("/headers"))), "EdDSA", "ed.pub")
    assert.equal("EdDSA", h.alg)
    acct = appstore({ key = false, secret = "{privateKey}", key_id = false })
      :account { parameters = { issuerId = "i", keyId = "k", privateKey = SECRET } }
    h = node_verified(bearer_of(assert(acct:get("/headers"))), "HS256", "secret.txt")
    assert.same({ alg = "HS256", typ = "JWT" }, h)
  end)

  it("reads an encrypted PEM with key_password; a wrong password is err.code key, not shown", function()
    local integ = appstore({ key_password = "{keyPassword}" }, nil)
    local def_params = { issuerId = "i", keyId = "k", privateKey = pem("ec_enc") }
    local function with(pass)
      local p = {}
      for k, v in pairs(def_params) do p[k] = v end
      p.keyPassword = pass
      return integ:account { parameters = p }
    end
    local h = node_verified(bearer_of(assert(with(PASSWORD):get("/headers"))), "ES256", "ec.pub")
    assert.equal("ES256", h.alg)
    local res, err = with("not-the-Password"):get("/headers")
    assert.is_nil(res)
    assert.equal("key", err.code)
    assert.matches("^jwt.key: ", err.message)
    assert.is_nil(tostring(err):find("not-the-Password", 1, true))
  end)

  it("renews the JWT before it expires (a 4 s JWT at half its life), not on every call", function()
    local acct = appstore({ ttl = 4 }):account { parameters = PARAMS }
    local first = bearer_of(assert(acct:get("/headers")))
    assert.equal(first, bearer_of(assert(acct:get("/headers"))))
    core.sleep(2.3)
    local second = bearer_of(assert(acct:get("/headers")))
    assert.are_not.equal(first, second)
    local _, c1 = node_verified(first, "ES256", "ec.pub")
    local _, c2 = node_verified(second, "ES256", "ec.pub")
    assert.is_true(c2.iat > c1.iat)
    assert.equal(4, c2.exp - c2.iat)
  end)

  it("works with a store: another account object on it uses the stored JWT", function()
    local key = core.b64encode(core.random(32))
    local sdir = helpers.tmpdir("jwtstore")
    local integ = appstore()
    local a = integ:account { parameters = PARAMS, store = connkit.store.file(sdir, { key = key }) }
    local token = assert(a:token())
    local b = integ:account { parameters = PARAMS, store = connkit.store.file(sdir, { key = key }) }
    assert.equal(token, bearer_of(assert(b:get("/headers"))))
  end)

  it("a key that cannot be read: err.code key naming the field, no key material", function()
    local acct = appstore():account { parameters = { issuerId = "i", keyId = "k",
      privateKey = "-----BEGIN PRIVATE KEY-----\nMIIBsecretbits\n-----END PRIVATE KEY-----\n" } }
    local res, err = acct:get("/headers")
    assert.is_nil(res)
    assert.equal("key", err.code)
    assert.matches("^jwt.key: ", err.message)
    assert.is_nil(tostring(err):find("MIIBsecretbits", 1, true))
    acct = appstore({ alg = "RS256" }):account { parameters = PARAMS }
    res, err = acct:get("/headers")
    assert.equal("key", err.code)
    assert.matches("jwt.alg is RS256, which does not fit the EC key of jwt.key", err.message, 1, true)
  end)

  it("definition errors name the field", function()
    local function def_error(block, extra)
      local ok, err = pcall(appstore, block, extra)
      assert.is_false(ok)
      return err
    end
    assert.matches("jwt.claims.exp is set by connkit (from jwt.ttl)",
      def_error({ claims = { exp = 1 } }), 1, true)
    assert.matches("jwt.claims.jti is set by connkit (from jwt.jti = true)",
      def_error({ claims = { jti = "x" } }), 1, true)
    assert.matches("jwt.key is required (or jwt.key_file or jwt.secret)", def_error({ key = false }), 1, true)
    assert.matches("jwt.key uses {keyId}, which is not declared secret = true", def_error({ key = "{keyId}" }), 1, true)
    assert.matches('jwt.alg must be one of "HS256"', def_error({ key = false, secret = "{privateKey}", alg = "ES256" }), 1, true)
    assert.matches("jwt.ttl must be at least 1", def_error({ ttl = 0 }), 1, true)
    assert.matches("jwt.claims.iss uses {nope}, which is neither a declared parameter nor a built-in",
      def_error({ claims = { iss = "{nope}" } }), 1, true)
    assert.matches("jwt.tll is not a known field of jwt", def_error({ tll = 5 }), 1, true)
    assert.matches('jwt is required with auth = "jwt"', def_error(nil, { jwt = false }), 1, true)
    assert.matches('jwt is only for auth = "jwt", oauth2.grant_type = "jwt_bearer", or a custom_token that uses {jwt}',
      def_error(nil, { auth = "api_token" }), 1, true)
  end)
end)

describe("oauth2.grant_type = \"jwt_bearer\" against oidc-provider", function()
  local op
  setup(function()
    op = helpers.peer("oidc").new { env = { JWT_AUTH_KEYS = dir } }
  end)
  teardown(function() if op then op.stop() end end)
  before_each(function()
    op.reset()
    assert(op.post("/jwt-auth/reset"))
    discovery.flush()
  end)

  local function service(params, jwt_extra)
    local def = {
      name = "Service account", key = "svc", auth = "oauth2", base_url = "{issuer}",
      parameters = { issuer = { required = true }, saKey = { secret = true } },
      oauth2 = { grant_type = "jwt_bearer", issuer = "{issuer}", client_id = "bearer-client", client_auth = "none" },
      jwt = { key = "{saKey}", key_id = "rsa-1", ttl = 3600, jti = true,
        claims = { iss = "svc@connkit.test", sub = "svc@connkit.test", scope = "read" } },
    }
    for k, v in pairs(jwt_extra or {}) do def.jwt[k] = v end
    return connkit.integration(def):account { parameters = params }
  end

  it("exchanges a signed assertion (aud: the token endpoint) for a token that works at /api/me; renewal is a new assertion", function()
    local acct = service { issuer = op.issuer, saKey = pem("rsa") }
    local res = assert(acct:get("/api/me"))
    assert.equal(200, res.status)
    assert.equal("svc@connkit.test", res:json().sub)
    assert(acct:refresh())
    assert.equal(200, assert(acct:get("/api/me")).status)
    local seen = assert(op.get("/jwt-auth/log"))
    local grants = {}
    for _, r in ipairs(seen) do
      if r.route == "jwt_bearer" then grants[#grants + 1] = r end
    end
    assert.equal(2, #grants)
    for _, g in ipairs(grants) do
      assert.is_true(g.ok)
      assert.equal("RS256", g.header.alg)
      assert.equal("rsa-1", g.header.kid)
      assert.equal(op.endpoints.token, g.claims.aud)
      assert.equal(3600, g.claims.exp - g.claims.iat)
    end
    assert.are_not.equal(grants[1].claims.jti, grants[2].claims.jti)
    local reqs = op.token_requests()
    assert.equal(2, #reqs)
    for _, r in ipairs(reqs) do
      assert.equal("urn:ietf:params:oauth:grant-type:jwt-bearer", r.grant_type)
      assert.equal(200, r.status)
      assert.same({ "assertion", "client_id", "grant_type" }, r.params)
    end
    assert.is_false(acct:status().has_refresh_token)
  end)

  it("a key the server does not know: invalid_grant, no key material in the error", function()
    local wrong = pem("wrong")
    local acct = service { issuer = op.issuer, saKey = wrong }
    local res, err = acct:get("/api/me")
    assert.is_nil(res)
    assert.equal("invalid_grant", err.code)
    assert.is_nil(tostring(err):find(key_bits(wrong), 1, true))
    assert.equal(0, op.stats().api.total)
    local seen = assert(op.get("/jwt-auth/log"))
    assert.equal("jwt_bearer", seen[1].route)
    assert.is_false(seen[1].ok)
  end)

  it("needs no client_id (the assertion may be all the authentication)", function()
    local integ = connkit.integration {
      name = "Google", key = "google", auth = "oauth2", base_url = "https://www.googleapis.com",
      parameters = { saKey = { secret = true, required = true } },
      oauth2 = { grant_type = "jwt_bearer", token_url = "https://oauth2.googleapis.com/token" },
      jwt = { key = "{saKey}", claims = { iss = "svc@project.iam.gserviceaccount.com",
        scope = "https://www.googleapis.com/auth/devstorage.read_only" }, ttl = 3600 },
    }
    assert(integ:account { parameters = { saKey = pem("rsa") } })
    local ok, err = pcall(connkit.integration, {
      name = "G", key = "g", auth = "oauth2", base_url = "https://x.test",
      oauth2 = { grant_type = "jwt_bearer", token_url = "https://x.test/token" } })
    assert.is_false(ok)
    assert.matches('jwt is required with oauth2.grant_type = "jwt_bearer"', err, 1, true)
  end)
end)

describe("{jwt} in a custom_token header: a GitHub App installation token", function()
  local sp
  setup(function() sp = helpers.peer("scripted") end)

  local function github(key_param)
    local integ = connkit.integration {
      name = "GitHub App", key = "ghapp", auth = "custom_token", base_url = sp.url,
      parameters = { clientId = { required = true }, installationId = { required = true },
        appKey = { secret = true, required = true } },
      jwt = { key = "{appKey}", claims = { iss = "{clientId}" }, ttl = 540, backdate = 60 },
      custom_token = {
        token_url = sp.url .. "/github/app/installations/{installationId}/access_tokens",
        headers = { Authorization = "Bearer {jwt}", ["X-GitHub-Api-Version"] = "2022-11-28" },
        token_path = "token", ttl = 3600,
      },
    }
    return integ:account { parameters = { clientId = "Iv1.8a61f9b3a7aba766", installationId = "4242", appKey = key_param } }
  end

  before_each(function()
    local status = sp.request("POST", "/github/app/key", { content_type = "application/json",
      body = cjson.encode { pem = assert(helpers.read_file(dir .. "/rsa.pub")), iss = "Iv1.8a61f9b3a7aba766" } })
    assert.equal(200, status)
  end)

  it("signs a JWT for the token request, then uses the installation token", function()
    local acct = github(pem("rsa"))
    local res = assert(acct:get("/github/installation/repositories"))
    assert.equal(200, res.status)
    local req = assert(sp.last("/github/app/installations/4242/access_tokens"))
    local token = assert(req.headers.authorization:match("^Bearer (.+)$"))
    local header, claims = node_verified(token, "RS256", "rsa.pub")
    assert.equal("RS256", header.alg)
    assert.equal("Iv1.8a61f9b3a7aba766", claims.iss)
    assert.equal(600, claims.exp - claims.iat)
    assert.equal("2022-11-28", req.headers["x-github-api-version"])
    -- the API call carried the installation token, not the JWT
    local api = assert(sp.last("/github/installation/repositories"))
    assert.matches("^Bearer ghs%-", api.headers.authorization)
    -- a forced renewal signs a new JWT (iat a second later)
    core.sleep(1.05)
    assert(acct:refresh())
    local again = assert(sp.last("/github/app/installations/4242/access_tokens"))
    assert.are_not.equal(req.headers.authorization, again.headers.authorization)
  end)

  it("a wrong key: the endpoint's 401 is err.code auth, no key material", function()
    local wrong = pem("wrong")
    local acct = github(wrong)
    local res, err = acct:get("/github/installation/repositories")
    assert.is_nil(res)
    assert.equal("auth", err.code)
    assert.equal(401, err.status)
    assert.is_nil(tostring(err):find(key_bits(wrong), 1, true))
  end)

  it("{jwt} needs a jwt block, and is not a credential", function()
    local ok, err = pcall(connkit.integration, {
      name = "G", key = "g", auth = "custom_token", base_url = "https://x.test",
      custom_token = { token_url = "https://x.test/t", headers = { Authorization = "Bearer {jwt}" } } })
    assert.is_false(ok)
    assert.matches("jwt is required: custom_token uses {jwt}", err, 1, true)
  end)
end)
