// Mutual TLS (RFC 8705) for the oidc peer: only in an instance started with
// the environment below (spec/mtls_oauth_spec.lua: info.new{ env = ... });
// without it this extension adds nothing.
//
//   MTLS_PORT         a second listener, https, on 127.0.0.1: the provider
//                     itself (token endpoint at /token, ...) plus the routes
//                     below; it asks for a client certificate and takes any
//                     (requestCert, rejectUnauthorized: false): the provider
//                     decides (tls_client_auth: verified by MTLS_CA and the
//                     subject DN; self_signed: the registered x5c)
//   MTLS_CA           the CA (PEM file) client certificates are verified with
//   MTLS_SERVER_CERT, MTLS_SERVER_KEY   the listener's certificate and key
//   MTLS_CLIENT_DN    tls_client_auth_subject_dn of "mtls-client" (RFC 2253)
//   MTLS_SELF_CERT    the self-signed certificate of "mtls-self-signed" (x5c)
//
// Clients: "mtls-client" (tls_client_auth; client credentials, authorization
// code, refresh) and "mtls-self-signed" (self_signed_tls_client_auth; client
// credentials); both get certificate-bound access tokens (cnf x5t#S256).
// Discovery lists the https listener's token and revocation endpoints in
// mtls_endpoint_aliases (RFC 8705 5).
// Routes:
//   GET /api/mtls      (https listener) a resource that accepts a bearer
//                      token only with the certificate it is bound to: 200
//                      { client_id, bound, presented } or 401 { error, reason }
//   GET /mtls-test/log (the http listener; /test/* is server.js's own) every token request and /api/mtls
//                      call: { route, client_id, presented (x5t#S256 of the
//                      certificate shown, or null), status }
//   POST /mtls-test/log/reset
import https from 'node:https';
import fs from 'node:fs';
import crypto from 'node:crypto';

export default function mtls(env) {
  const port = Number(process.env.MTLS_PORT);
  if (!port) return {};
  const read = (name) => fs.readFileSync(process.env[name], 'utf8');
  const selfPem = read('MTLS_SELF_CERT');
  const x5t = (cert) => crypto.createHash('sha256').update(cert.raw).digest('base64url');
  // the certificate the client showed on this connection (X509Certificate), or undefined
  const shown = (socket) => {
    const c = typeof socket?.getPeerCertificate === 'function' ? socket.getPeerCertificate() : undefined;
    return c && c.raw ? new crypto.X509Certificate(c.raw) : undefined;
  };
  // RFC 2253 order (last RDN first), as tls_client_auth_subject_dn is written
  const dn = (cert) => cert.subject.split('\n').reverse().join(',');
  let log = [];

  const selfJwk = {
    ...new crypto.X509Certificate(selfPem).publicKey.export({ format: 'jwk' }),
    x5c: [selfPem.replace(/-----[^-]+-----|\s/g, '')],
  };

  async function api(req, res) {
    const m = /^bearer\s+(.+)$/i.exec(req.headers.authorization || '');
    const found = m ? await env.findToken(m[1].trim()) : undefined;
    const cert = shown(req.socket);
    const presented = cert ? x5t(cert) : null;
    const bound = found ? found.token['x5t#S256'] : undefined;
    let reason;
    if (!found) reason = 'unknown token';
    else if (!bound) reason = 'the token is not certificate-bound';
    else if (bound !== presented) reason = 'the certificate is not the one the token is bound to (cnf x5t#S256)';
    log.push({ route: 'api', client_id: found?.token.clientId, presented, status: reason ? 401 : 200 });
    if (reason) return env.send(res, 401, { error: 'invalid_token', reason });
    return env.send(res, 200, { client_id: found.token.clientId, bound, presented });
  }

  return {
    clients: [
      {
        client_id: 'mtls-client',
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_subject_dn: process.env.MTLS_CLIENT_DN,
        tls_client_certificate_bound_access_tokens: true,
        grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: env.WEB_REDIRECTS,
      },
      {
        client_id: 'mtls-self-signed',
        token_endpoint_auth_method: 'self_signed_tls_client_auth',
        jwks: { keys: [selfJwk] },
        tls_client_certificate_bound_access_tokens: true,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    // oidc-provider's defaults and the two mTLS methods (a later extension
    // that sets this list must keep them)
    options: {
      clientAuthMethods: ['client_secret_basic', 'client_secret_jwt', 'client_secret_post', 'private_key_jwt',
        'none', 'tls_client_auth', 'self_signed_tls_client_auth'],
    },
    features: {
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        selfSignedTlsClientAuth: true,
        getCertificate: (ctx) => shown(ctx.socket),
        certificateAuthorized: (ctx) => ctx.socket.authorized === true,
        certificateSubjectMatches: (ctx, property, expected) => {
          const cert = shown(ctx.socket);
          return property === 'tls_client_auth_subject_dn' && cert !== undefined && dn(cert) === expected;
        },
      },
    },
    setup(provider) {
      provider.use(async (ctx, next) => {
        await next();
        if (ctx.oidc?.route === 'discovery' && ctx.status === 200) {
          // RFC 8705 5: where clients that present a certificate go
          ctx.body.mtls_endpoint_aliases = { token_endpoint: `https://127.0.0.1:${port}/token`,
            revocation_endpoint: `https://127.0.0.1:${port}/token/revocation` };
        }
        if (ctx.oidc?.route !== 'token') return;
        const cert = shown(ctx.socket);
        log.push({ route: 'token', client_id: ctx.oidc.client?.clientId, presented: cert ? x5t(cert) : null,
          status: ctx.status, error: ctx.body?.error, grant_type: ctx.oidc.params?.grant_type });
      });
      https.createServer({
        key: read('MTLS_SERVER_KEY'), cert: read('MTLS_SERVER_CERT'), ca: read('MTLS_CA'),
        requestCert: true, rejectUnauthorized: false,
      }, async (req, res) => {
        const url = new URL(req.url, `https://127.0.0.1:${port}`);
        try {
          if (url.pathname === '/api/mtls') return await api(req, res);
        } catch (err) {
          return env.send(res, 500, { error: 'server_error', error_description: err.message });
        }
        return env.callback()(req, res);
      }).listen(port, '127.0.0.1');
    },
    async route(req, res, url) {
      if (url.pathname === '/mtls-test/log' && req.method === 'GET') {
        env.send(res, 200, log);
        return true;
      }
      if (url.pathname === '/mtls-test/log/reset' && req.method === 'POST') {
        log = [];
        env.send(res, 200, { ok: true });
        return true;
      }
      return false;
    },
  };
}
