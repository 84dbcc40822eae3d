-- Mutual TLS (RFC 8705) over the curl transport: the client certificate of
-- `tls = { cert_file =, key_file =, key_password = }` as an nginx with
-- ssl_verify_client saw it (subject and fingerprint echoed back), keep-alive
-- connections never shared between certificates, the account's `tls`
-- over the integration's, and the errors for a missing file, a wrong
-- password and a key that is not the certificate's. The OAuth side
-- (tls_client_auth, self_signed_tls_client_auth, certificate-bound tokens)
-- is in spec/mtls_oauth_spec.lua; the ngx transport in spec/nginx_mtls_spec.lua.
local helpers = require "helpers"
local openresty = require "peers.openresty"
local connkit = require "connkit"

local pki, ng
local n = 0

-- nginx servers that ask for a client certificate: "mtls" requires one from
-- the test CA, "any" takes any (a self-signed one too) and echoes it
local function echo_server(verify)
  return { tls = true, body = ([[
    ssl_verify_client %s;
    ssl_client_certificate %s;
    ssl_verify_depth 2;
    location / {
      default_type text/plain;
      return 200 "dn=$ssl_client_s_dn\nsha1=$ssl_client_fingerprint\nverify=$ssl_client_verify\nconnection=$connection\n";
    }
    location = /redirect-same { return 302 /after; }
    location = /redirect-to { return 302 https://127.0.0.1:$arg_port/who; }
  ]]):format(verify, pki.ca) }
end

local function field(body, name) return (body or ""):match(name .. "=([^\n]*)") end

local function integration(tls, extra)
  n = n + 1
  local def = { name = "mTLS " .. n, key = "mtls" .. n, auth = "none", base_url = "{base}",
    parameters = { base = { required = true }, keyPassword = { secret = true } }, tls = tls }
  for k, v in pairs(extra or {}) do def[k] = v end
  return connkit.integration(def)
end

local function account(tls, opts, server)
  opts = opts or {}
  opts.parameters = opts.parameters or {}
  opts.parameters.base = (server or ng.servers.mtls).url
  return integration(tls):account(opts)
end

describe("mTLS over the curl transport", function()
  setup(function()
    pki = require("support.mtls_pki")(helpers)
    ng = openresty.start(helpers, { servers = { mtls = echo_server("on"), any = echo_server("optional_no_ca") } })
  end)
  teardown(function() if ng then ng.stop() end end)

  it("presents the certificate: nginx saw its subject and fingerprint, verified by the CA", function()
    local acct = account({ ca_file = ng.ca_file, cert_file = pki.client.cert, key_file = pki.client.key })
    local res = assert(acct:get("/who"))
    assert.equal(200, res.status)
    assert.equal(pki.client.dn, field(res.body, "dn"))
    assert.equal(pki.client.sha1, field(res.body, "sha1"))
    assert.equal("SUCCESS", field(res.body, "verify"))
  end)

  it("sends none without tls.cert_file: the server refuses the request", function()
    local res = assert(account({ ca_file = ng.ca_file }):get("/who"))
    assert.equal(400, res.status)
    assert.matches("No required SSL certificate", res.body, 1, true)
  end)

  it("decrypts an encrypted key with key_password from a secret parameter", function()
    local acct = account({ ca_file = ng.ca_file, cert_file = pki.enc.cert, key_file = pki.enc.key,
      key_password = "{keyPassword}" }, { parameters = { keyPassword = pki.password } })
    local res = assert(acct:get("/who"))
    assert.equal(200, res.status)
    assert.equal(pki.enc.dn, field(res.body, "dn"))
    assert.is_nil(tostring(acct):find(pki.password, 1, true))
    assert.is_nil(tostring(acct._client_tls):find(pki.password, 1, true))
    assert.is_nil(tostring(acct:prepare { url = "/who" }):find(pki.password, 1, true))
  end)

  it("presents a self-signed certificate as it is (the server decides what to trust)", function()
    local acct = account({ ca_file = ng.ca_file, cert_file = pki.self.cert, key_file = pki.self.key }, nil,
      ng.servers.any)
    local res = assert(acct:get("/who"))
    assert.equal(pki.self.sha1, field(res.body, "sha1"))
    assert.matches("^FAILED", field(res.body, "verify"))
  end)

  it("never serves one certificate's request on a connection made with another", function()
    local a = account({ ca_file = ng.ca_file, cert_file = pki.client.cert, key_file = pki.client.key })
    local b = account({ ca_file = ng.ca_file, cert_file = pki.other.cert, key_file = pki.other.key })
    local conns = { a = {}, b = {} }
    for _ = 1, 3 do
      for name, acct in pairs({ a = a, b = b }) do
        local res = assert(acct:get("/who"))
        assert.equal((name == "a" and pki.client or pki.other).dn, field(res.body, "dn"))
        conns[name][#conns[name] + 1] = field(res.body, "connection")
      end
    end
    -- each account's requests share its connection (keep-alive works), and
    -- the two never share one
    assert.equal(conns.a[1], conns.a[3])
    assert.equal(conns.b[1], conns.b[3])
    for _, ca in ipairs(conns.a) do
      for _, cb in ipairs(conns.b) do assert.not_equal(ca, cb) end
    end
  end)

  it("takes the account's tls over the integration's, field by field", function()
    local integ = integration({ ca_file = ng.ca_file, cert_file = pki.client.cert, key_file = pki.client.key })
    local own = integ:account { id = "own", parameters = { base = ng.servers.mtls.url },
      tls = { cert_file = pki.other.cert, key_file = pki.other.key } }
    assert.equal(pki.other.dn, field(assert(own:get("/who")).body, "dn")) -- (ca_file: the integration's)
    local inherited = integ:account { id = "inherits", parameters = { base = ng.servers.mtls.url } }
    assert.equal(pki.client.dn, field(assert(inherited:get("/who")).body, "dn"))
  end)

  it("fills cert_file and key_file from parameters (one certificate per account)", function()
    n = n + 1
    local integ = connkit.integration { name = "mTLS tpl", key = "mtlstpl" .. n, auth = "none", base_url = ng.servers.mtls.url,
      parameters = { certFile = { required = true }, keyFile = { required = true } },
      tls = { ca_file = ng.ca_file, cert_file = "{certFile}", key_file = "{keyFile}" } }
    local acct = integ:account { parameters = { certFile = pki.other.cert, keyFile = pki.other.key } }
    assert.equal(pki.other.dn, field(assert(acct:get("/who")).body, "dn"))
  end)

  it("sends the certificate with the requests that carry credentials only", function()
    n = n + 1
    local acct = connkit.integration { name = "mTLS origins", key = "mtlsorig" .. n, auth = "api_token",
      base_url = ng.servers.mtls.url,
      tls = { ca_file = ng.ca_file, cert_file = pki.client.cert, key_file = pki.client.key } }
      :account { credentials = { token = "origin-token" } }
    assert.equal(pki.client.sha1, field(assert(acct:get("/who")).body, "sha1"))
    -- another origin (the any-certificate server): sent without credentials, so without the certificate
    local res = assert(acct:get(ng.servers.any.url .. "/who"))
    assert.equal("NONE", field(res.body, "verify"))
    res = assert(acct:get(ng.servers.any.url .. "/who", { auth = true }))
    assert.equal(pki.client.sha1, field(res.body, "sha1"))
  end)

  it("follows a redirect to its own origin with the certificate, to another without it", function()
    n = n + 1
    local acct = connkit.integration { name = "mTLS redirects", key = "mtlsredir" .. n, auth = "api_token",
      base_url = ng.servers.mtls.url,
      tls = { ca_file = ng.ca_file, cert_file = pki.client.cert, key_file = pki.client.key } }
      :account { credentials = { token = "redirect-token" } }
    local res = assert(acct:get("/redirect-same", { follow = true }))
    assert.equal(pki.client.sha1, field(res.body, "sha1"))
    res = assert(acct:get("/redirect-to", { follow = true, query = { port = ng.servers.any.port } }))
    assert.equal(200, res.status)
    assert.equal("NONE", field(res.body, "verify"))
  end)

  describe("errors name the field, never the password", function()
    local function fails(tls, opts)
      local hooked = {}
      opts = opts or {}
      opts.on_response = function(info) hooked[#hooked + 1] = info end
      local acct = account(tls, opts)
      local res, err = acct:get("/who")
      assert.is_nil(res)
      assert.equal("client_cert", err.code)
      assert.is_nil(err.message:find(pki.password, 1, true))
      for _, info in ipairs(hooked) do
        for _, v in pairs(info) do assert.is_nil(tostring(v):find(pki.password, 1, true)) end
      end
      return err
    end

    it("a certificate file that is not there", function()
      local err = fails({ ca_file = ng.ca_file, cert_file = pki.dir .. "/missing.pem", key_file = pki.client.key })
      assert.matches("tls.cert_file: cannot read " .. pki.dir .. "/missing.pem", err.message, 1, true)
    end)

    it("a wrong key password", function()
      local err = fails({ ca_file = ng.ca_file, cert_file = pki.enc.cert, key_file = pki.enc.key,
        key_password = "{keyPassword}" }, { parameters = { keyPassword = pki.password .. "x" } })
      assert.matches("tls.key_password: the key in " .. pki.enc.key, err.message, 1, true)
      assert.matches("wrong password", err.message, 1, true)
      assert.is_nil(err.message:find(pki.password .. "x", 1, true))
    end)

    it("an encrypted key without a password (never a prompt on the terminal)", function()
      local err = fails({ ca_file = ng.ca_file, cert_file = pki.enc.cert, key_file = pki.enc.key })
      assert.matches("tls.key_password: the key in " .. pki.enc.key .. " (tls.key_file) is encrypted", err.message, 1, true)
    end)

    it("a key that is not the certificate's", function()
      local err = fails({ ca_file = ng.ca_file, cert_file = pki.client.cert, key_file = pki.other.key })
      assert.matches("tls.key_file: the key in " .. pki.other.key .. " does not match the certificate in "
        .. pki.client.cert, err.message, 1, true)
    end)

    it("a file that holds no certificate", function()
      local err = fails({ ca_file = ng.ca_file, cert_file = pki.client.key, key_file = pki.client.key })
      assert.matches("tls.cert_file: " .. pki.client.key .. " holds no PEM certificate", err.message, 1, true)
    end)
  end)

  describe("definition errors", function()
    local function refuses(def_tls, fieldname, msg, extra)
      local ok, err = pcall(integration, def_tls, extra)
      assert.is_false(ok)
      assert.matches(fieldname, tostring(err), 1, true)
      if msg then assert.matches(msg, tostring(err), 1, true) end
    end

    it("cert_file without key_file, and the other way round", function()
      refuses({ cert_file = "/x.pem" }, "tls.key_file", "is required with tls.cert_file")
      refuses({ key_file = "/x.key" }, "tls.cert_file", "is required with tls.key_file")
      refuses({ cert_file = "/x.pem", key_file = "/x.key", key_password = 5 }, "tls.key_password", "must be a string")
      refuses({ cert_file = "{nope}", key_file = "/x.key" }, "tls.cert_file", "{nope}")
      refuses({ cert_file = "/x.pem", key_file = "/x.key", verify = false }, "tls.verify")
    end)

    it("client_auth = tls_client_auth or self_signed_tls_client_auth without a certificate", function()
      for _, method in ipairs({ "tls_client_auth", "self_signed_tls_client_auth" }) do
        refuses(nil, "tls.cert_file", ('oauth2.client_auth = "%s"'):format(method), { auth = "oauth2",
          oauth2 = { grant_type = "client_credentials", token_url = "https://idp.test/token",
            client_id = "c", client_auth = method } })
      end
    end)

    it("an account that gives only one of cert_file and key_file", function()
      local integ = integration({ ca_file = "/ca.pem" })
      local ok, err = pcall(integ.account, integ, { parameters = { base = "https://x.test" },
        tls = { cert_file = pki.client.cert } })
      assert.is_false(ok)
      assert.matches("tls.key_file is required with tls.cert_file", tostring(err), 1, true)
    end)
  end)
end)
