--- Client certificates (mutual TLS, RFC 8705) for the ngx transport:
-- cosockets take a parsed certificate chain and key (tcpsock:setclientcert,
-- lua-resty-core 0.1.22 and later), so the account's files are read and the
-- key decrypted with its password in C (core.tls_client's load(true),
-- OpenSSL), then parsed with ngx.ssl. That is done once per account object
-- and worker: a certificate renewed on disk is seen by new account objects
-- (the curl transport reads the files for each new connection).
-- @module connkit.transport.ngx_client_cert
local M = {}

-- core.tls_client -> { cert =, key =, fingerprint = } (parsed, ready)
local ready = setmetatable({}, { __mode = "k" })

--- The parsed certificate and key of `client` (a core.tls_client) and its
-- SHA-256 fingerprint (hex), or nil, "client_cert", message naming the
-- field (never the password).
-- @param client the core.tls_client of the request
-- @treturn[1] table { cert =, key =, fingerprint = }
-- @return[2] nil
-- @treturn[2] string the error code
-- @treturn[2] string the message
function M.get(client)
  local r = ready[client]
  if r then return r end
  local fingerprint, cert_pem, key_pem = client:load(true)
  if not fingerprint then return nil, cert_pem, key_pem end
  local ssl = require "ngx.ssl"
  local cert, cerr = ssl.parse_pem_cert(cert_pem)
  if not cert then
    return nil, "client_cert", "tls.cert_file: nginx cannot use the certificate: " .. tostring(cerr)
  end
  local key, kerr = ssl.parse_pem_priv_key(key_pem)
  if not key then
    return nil, "client_cert", "tls.key_file: nginx cannot use the key: " .. tostring(kerr)
  end
  r = { cert = cert, key = key, fingerprint = fingerprint }
  ready[client] = r
  return r
end

return M
