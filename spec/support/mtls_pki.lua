--- A private PKI for the mTLS specs, made with the openssl command in a
-- temporary directory: a CA, a server certificate for 127.0.0.1 (for the
-- oidc peer's https listener), and client certificates: `client` and
-- `other` signed by the CA, `enc` signed by the CA with a key encrypted
-- under `password`, and `self` self-signed. EC P-256 keys (fast to make).
--
--   local pki = require("support.mtls_pki")(helpers)
--   pki.dir, pki.ca, pki.server = { cert, key }, pki.password
--   pki.client / pki.other / pki.enc / pki.self = { cert =, key =, dn =, sha1 =, sha256 = }
--     (dn as nginx's $ssl_client_s_dn writes it; sha1 as $ssl_client_fingerprint;
--      sha256 as base64url, as in cnf.x5t#S256)
local made

return function(helpers)
  if made then return made end
  local dir = helpers.tmpdir("mtls-pki")
  local q = helpers.shell_quote
  local function sh(cmd)
    local ok, out = helpers.run("cd " .. q(dir) .. " && " .. cmd)
    assert(ok, "mtls pki: " .. cmd .. "\n" .. tostring(out))
    return out
  end
  local password = "pki pass: s3cret/+%"
  local newkey = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256"
  sh(newkey .. " -out ca.key && openssl req -x509 -new -key ca.key -days 2 -subj '/CN=connkit mtls test CA'"
    .. " -out ca.pem")
  helpers.write_file(dir .. "/server.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
  helpers.write_file(dir .. "/client.ext", "extendedKeyUsage=clientAuth\n")
  local function signed(name, subj, ext, keyopts)
    sh(("%s%s -out %s.key && openssl req -new -key %s.key %s -subj %s -out %s.csr"
      .. " && openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile %s -out %s.pem")
      :format(newkey, keyopts or "", name, name, keyopts and ("-passin " .. q("pass:" .. password)) or "",
        q(subj), name, name, ext, name))
  end
  signed("server", "/CN=127.0.0.1", "server.ext")
  signed("client", "/O=connkit test/CN=connkit mtls client", "client.ext")
  signed("other", "/O=connkit test/CN=connkit other client", "client.ext")
  signed("enc", "/O=connkit test/CN=connkit encrypted-key client", "client.ext",
    " -aes-256-cbc -pass " .. q("pass:" .. password))
  sh(newkey .. " -out self.key && openssl req -x509 -new -key self.key -days 2"
    .. " -subj '/CN=connkit self-signed client' -addext extendedKeyUsage=clientAuth -out self.pem")
  local function info(name)
    local sha1 = sh("openssl x509 -in " .. name .. ".pem -noout -fingerprint -sha1"):match("=([%x:]+)")
    local b64 = sh("openssl x509 -in " .. name .. ".pem -outform DER | openssl dgst -sha256 -binary | openssl base64 -A")
    local dn = sh("openssl x509 -in " .. name .. ".pem -noout -subject -nameopt RFC2253"):match("subject=(.-)%s*$")
    return {
      cert = dir .. "/" .. name .. ".pem", key = dir .. "/" .. name .. ".key", dn = dn,
      sha1 = sha1:gsub(":", ""):lower(),
      sha256 = (b64:match("%S+"):gsub("+", "-"):gsub("/", "_"):gsub("=", "")),
    }
  end
  made = {
    dir = dir, ca = dir .. "/ca.pem", password = password,
    server = { cert = dir .. "/server.pem", key = dir .. "/server.key" },
    client = info("client"), other = info("other"), enc = info("enc"), self = info("self"),
  }
  return made
end
