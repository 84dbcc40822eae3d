-- mTLS (RFC 8705) over the ngx transport: a request made inside OpenResty
-- presents the account's client certificate (tcpsock:setclientcert; an
-- encrypted key decrypted in C), as an nginx server with
-- ssl_verify_client saw it; cosocket pools are keyed by the certificate;
-- a wrong password or a key that is not the certificate's gives
-- client_cert naming the field, never the password. Scenario:
-- spec/nginx/mtls_request.lua.
local helpers = require "helpers"
local openresty = require "peers.openresty"

local function field(body, name) return (body or ""):match(name .. "=([^\n]*)") end

describe("mTLS over the ngx transport", function()
  local pki, ng, out
  setup(function()
    pki = require("support.mtls_pki")(helpers)
    ng = openresty.start(helpers, { servers = { mtls = { tls = true, body = ([[
      ssl_verify_client on;
      ssl_client_certificate %s;
      location / {
        default_type text/plain;
        return 200 "dn=$ssl_client_s_dn\nsha1=$ssl_client_fingerprint\nverify=$ssl_client_verify\nconnection=$connection\n";
      }
    ]]):format(pki.ca) } } })
    out = ng:run("mtls_request", {
      base = ng.servers.mtls.url,
      a_cert = pki.client.cert, a_key = pki.client.key,
      b_cert = pki.enc.cert, b_key = pki.enc.key, b_password = pki.password,
      bad_password = pki.password .. "x",
    })
  end)
  teardown(function() if ng then ng.stop() end end)

  it("presents each account's certificate, verified by the server", function()
    assert.equal("ngx", out.transport)
    for i = 1, 3 do
      assert.equal(200, out.a[i].status, out.a[i].message)
      assert.equal(pki.client.dn, field(out.a[i].body, "dn"))
      assert.equal(pki.client.sha1, field(out.a[i].body, "sha1"))
      assert.equal("SUCCESS", field(out.a[i].body, "verify"))
      -- the encrypted key, decrypted with key_password
      assert.equal(200, out.b[i].status, out.b[i].message)
      assert.equal(pki.enc.dn, field(out.b[i].body, "dn"))
    end
  end)

  it("keeps a connection pool per certificate", function()
    assert.equal(field(out.a[1].body, "connection"), field(out.a[3].body, "connection"))
    assert.equal(field(out.b[1].body, "connection"), field(out.b[3].body, "connection"))
    assert.not_equal(field(out.a[1].body, "connection"), field(out.b[1].body, "connection"))
  end)

  it("sends none without a certificate (the server refuses), on a connection of its own", function()
    assert.equal(400, out.none.status)
    assert.matches("No required SSL certificate", out.none.body, 1, true)
  end)

  it("a wrong password and a key that is not the certificate's: client_cert naming the field", function()
    assert.equal("client_cert", out.bad.code)
    assert.matches("tls.key_password: the key in " .. pki.enc.key, out.bad.message, 1, true)
    assert.is_nil(out.bad.message:find(pki.password, 1, true))
    assert.equal("client_cert", out.mismatch.code)
    assert.matches("tls.key_file: the key in " .. pki.enc.key .. " does not match", out.mismatch.message, 1, true)
    assert.is_nil(ng:error_log():find(pki.password, 1, true))
  end)
end)
