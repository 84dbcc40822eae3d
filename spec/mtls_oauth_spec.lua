-- OAuth 2.0 mutual-TLS client authentication and certificate-bound access
-- tokens (RFC 8705) against oidc-provider: client_auth = "tls_client_auth"
-- (a CA-signed certificate, matched by subject DN) and
-- "self_signed_tls_client_auth" (a registered self-signed certificate), the
-- token bound to the certificate (cnf x5t#S256) accepted by a resource that
-- checks it with that certificate and refused with another, and a refresh
-- that keeps the binding. The peer's mTLS listener: spec/oidc/ext/mtls.mjs.
local helpers = require "helpers"
local connkit = require "connkit"
local http = require "scripted.http"

local pki, idp, base
local n = 0

local function log() return assert(http.get_json(helpers, idp.url .. "/mtls-test/log")) end

local function integration(client_id, method, cert, grant)
  n = n + 1
  return connkit.integration {
    name = "mTLS OAuth " .. n, key = "mtlsoauth" .. n, auth = "oauth2", base_url = base,
    oauth2 = { grant_type = grant or "client_credentials", token_url = base .. "/token",
      authorize_url = idp.endpoints.authorization, client_id = client_id, client_auth = method,
      scope = grant and "openid" or nil },
    tls = { ca_file = pki.ca, cert_file = cert.cert, key_file = cert.key },
  }
end

-- an account with no credentials of its own, showing `cert`, for the resource
local function bare(cert)
  n = n + 1
  return connkit.integration { name = "mTLS bare " .. n, key = "mtlsbare" .. n, auth = "none", base_url = base,
    tls = { ca_file = pki.ca, cert_file = cert.cert, key_file = cert.key } }:account {}
end

describe("RFC 8705 against oidc-provider", function()
  setup(function()
    pki = require("support.mtls_pki")(helpers)
    local port = helpers.free_port()
    idp = helpers.peer("oidc").new { env = {
      MTLS_PORT = port, MTLS_CA = pki.ca, MTLS_SERVER_CERT = pki.server.cert, MTLS_SERVER_KEY = pki.server.key,
      MTLS_CLIENT_DN = pki.client.dn, MTLS_SELF_CERT = pki.self.cert,
    } }
    helpers.wait_port(port, 20)
    base = "https://127.0.0.1:" .. port
  end)
  teardown(function() if idp then idp.stop() end end)
  before_each(function() assert(http.post_json(helpers, idp.url .. "/mtls-test/log/reset")) end)

  it("tls_client_auth: the certificate authenticates the client; the id alone in the body", function()
    local acct = integration("mtls-client", "tls_client_auth", pki.client):account {}
    local token = assert(acct:token())
    local entry = log()[1]
    assert.equal("token", entry.route)
    assert.equal(200, entry.status)
    assert.equal("mtls-client", entry.client_id)
    assert.equal(pki.client.sha256, entry.presented)
    -- what the token endpoint received: client_id in the body, no secret, no Basic header
    local req = idp.token_requests()
    req = req[#req]
    assert.equal("none", req.client_auth)
    assert.equal("mtls-client", req.client_id)
    assert.same({ "client_id", "grant_type" }, req.params)
    -- the token is bound to the certificate: the resource takes it from this account
    local res = assert(acct:get("/api/mtls"))
    assert.equal(200, res.status)
    assert.equal(pki.client.sha256, res:json().bound)
    -- and refuses it shown with another certificate
    res = assert(bare(pki.other):get("/api/mtls", { headers = { Authorization = "Bearer " .. token } }))
    assert.equal(401, res.status)
    assert.matches("not the one the token is bound to", res:json().reason, 1, true)
  end)

  it("tls_client_auth with a certificate of another subject is refused (invalid_client)", function()
    local acct = integration("mtls-client", "tls_client_auth", pki.other):account {}
    local tok, err = acct:token()
    assert.is_nil(tok)
    assert.equal("invalid_client", err.code)
    assert.equal(pki.other.sha256, log()[1].presented)
  end)

  it("self_signed_tls_client_auth: the registered self-signed certificate", function()
    local acct = integration("mtls-self-signed", "self_signed_tls_client_auth", pki.self):account {}
    local token = assert(acct:token())
    assert.equal(pki.self.sha256, log()[1].presented)
    local res = assert(acct:get("/api/mtls"))
    assert.equal(200, res.status)
    assert.equal("mtls-self-signed", res:json().client_id)
    assert.equal(pki.self.sha256, res:json().bound)
    res = assert(bare(pki.client):get("/api/mtls", { headers = { Authorization = "Bearer " .. token } }))
    assert.equal(401, res.status)
  end)

  it("takes the token endpoint from the issuer's mtls_endpoint_aliases (RFC 8705 5)", function()
    n = n + 1
    local acct = connkit.integration {
      name = "mTLS discovery", key = "mtlsdisc" .. n, auth = "oauth2", base_url = base,
      oauth2 = { issuer = idp.issuer, grant_type = "client_credentials", client_id = "mtls-client",
        client_auth = "tls_client_auth" },
      tls = { ca_file = pki.ca, cert_file = pki.client.cert, key_file = pki.client.key },
    }:account {}
    assert(acct:token())
    local entry = log()[1]
    assert.equal("token", entry.route)
    assert.equal(200, entry.status)
    assert.equal(pki.client.sha256, entry.presented) -- (the plain http endpoint sees no certificate)
    assert.equal(200, assert(acct:get("/api/mtls")).status)
    assert(acct:revoke())
  end)

  it("keeps the binding across a refresh: the refreshed token works with the same certificate", function()
    local acct = integration("mtls-client", "tls_client_auth", pki.client, "authorization_code"):account {}
    local url = assert(acct:authorize_url { redirect_uri = idp.endpoints.callback })
    assert(acct:finish_authorization(assert(idp.authorize(url))))
    local first = assert(acct:token())
    assert(acct:refresh())
    local second = assert(acct:token())
    assert.not_equal(first, second)
    local res = assert(acct:get("/api/mtls"))
    assert.equal(200, res.status)
    assert.equal(pki.client.sha256, res:json().bound)
    local grants = {}
    for _, e in ipairs(log()) do
      if e.route == "token" then
        grants[#grants + 1] = e.grant_type
        assert.equal(200, e.status)
        assert.equal(pki.client.sha256, e.presented) -- the same certificate each time
      end
    end
    assert.same({ "authorization_code", "refresh_token" }, grants)
    -- the refreshed token is refused with another certificate
    res = assert(bare(pki.other):get("/api/mtls", { headers = { Authorization = "Bearer " .. second } }))
    assert.equal(401, res.status)
  end)
end)
