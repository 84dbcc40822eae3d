--- TLS for the ngx transport: the cosocket handshake with verification
-- against nginx's lua_ssl_trusted_certificate, SNI, and the identity check
-- of an IP address (which nginx does not make).
-- @module connkit.transport.ngx_tls
local M = {}

-- Whether the certificate of TLS session `session` (what sslhandshake
-- returned) is for IP address `ip`: true, or nil and why not.
-- lua-nginx-module checks the certificate's name only against a host NAME
-- given for SNI; curl checks an IP address in the URL against the
-- certificate's IP addresses, and so do we, with OpenSSL's own check.
local ffi
local function ip_matches(session, ip)
  if not ffi then
    ffi = require "ffi"
    pcall(ffi.cdef, [[
      typedef struct ssl_session_st SSL_SESSION;
      typedef struct x509_st X509;
      X509 *SSL_SESSION_get0_peer(SSL_SESSION *s);
      int X509_check_ip_asc(X509 *x, const char *ipasc, unsigned int flags);
    ]])
  end
  if type(session) ~= "cdata" or session == nil then
    return nil, "no TLS session to check the certificate's IP address against"
  end
  local cert = ffi.C.SSL_SESSION_get0_peer(ffi.cast("SSL_SESSION *", session))
  if cert == nil then return nil, "the server sent no certificate" end
  if ffi.C.X509_check_ip_asc(cert, ip, 0) ~= 1 then
    return nil, ("certificate verify failed: the certificate is not for IP address %s"):format(ip)
  end
  return true
end

--- The TLS handshake of cosocket `sock`, verified: true, or nil and why.
-- `sni`: the host name to send and check (nil for an IP address); `ip`:
-- the IP address the certificate must be for (nil for a name); `client`:
-- the client certificate to present ({ cert =, key = } parsed by ngx.ssl,
-- see connkit.transport.ngx_client_cert), or nil.
-- @param sock the connected cosocket
-- @tparam[opt] string sni the host name
-- @tparam[opt] string ip the IP address
-- @tparam[opt] table client the client certificate
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] string why
function M.handshake(sock, sni, ip, client)
  if client then
    local set, serr = sock:setclientcert(client.cert, client.key)
    if not set then return nil, "the client certificate cannot be used: " .. tostring(serr) end
  end
  -- reused_session must not be false: lua-resty-core 0.1.25 then returns
  -- true for a handshake that ended without yielding without reading its
  -- verification result (seen: a refused certificate, then a closed
  -- connection). With nil it reads it, and raises ("assertion failed!")
  -- instead of returning nil, err when verification failed that way;
  -- nginx's error log has the reason either way.
  local done, ok, err = pcall(sock.sslhandshake, sock, nil, sni, true)
  if not done then
    ok, err = nil, "the certificate was refused (" .. tostring(ok) .. "; nginx's error log says why)"
  end
  if ok and ip then ok, err = ip_matches(ok, ip) end
  return ok, err
end

return M
