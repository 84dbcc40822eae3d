// JWT client authentication (RFC 7523 2.2) and the JWT bearer grant
// (RFC 7523 2.1) for spec/jwt_client_auth_spec.lua and spec/jwt_auth_spec.lua.
//
// Environment: JWT_AUTH_KEYS, a directory with the public keys the spec made
// before the peer started (rsa.pub, ec.pub, ed.pub: PEM). Without it this
// extension adds nothing.
//
// Clients:
//   pkjwt-client   private_key_jwt; jwks: the three keys, kids rsa-1, ec-1, ed-1;
//                  authorization_code, refresh_token, client_credentials, device_code
//   csjwt-client   client_secret_jwt; secret CSJWT_SECRET below (>= 32 bytes)
//   bearer-client  token_endpoint_auth_method none; only the jwt-bearer grant
// The jwt-bearer grant (urn:ietf:params:oauth:grant-type:jwt-bearer) takes an
// `assertion` signed by one of the same three keys (by kid), iss and sub
// "svc@connkit.test", aud the token endpoint; it issues an access token for
// `sub` that /api/me accepts (no refresh token).
// Routes (outside /test/, which server.js answers itself):
//   POST /jwt-auth/reset forgets the log
//   GET /jwt-auth/log    what every token / revocation / device authorization
//        request carried: { route, grant_type, client_id, client_assertion_type,
//        assertion_header {alg,kid,typ}, assertion_claims, client_secret_sent,
//        basic_auth, status, error }, and { route: 'jwt_bearer', header,
//        claims, ok, reason } per jwt-bearer assertion checked. Newest last.
import fs from 'node:fs';
import crypto from 'node:crypto';
import * as jose from 'jose';
import { errors } from 'oidc-provider';

export const CSJWT_SECRET = 'csjwt-secret-0123456789-abcdefghij-XYZ';
const BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const SERVICE = 'svc@connkit.test';

export default (env) => {
  const dir = process.env.JWT_AUTH_KEYS;
  if (!dir) return {};
  const jwks = { keys: [] };
  for (const [file, kid] of [['rsa.pub', 'rsa-1'], ['ec.pub', 'ec-1'], ['ed.pub', 'ed-1']]) {
    const jwk = crypto.createPublicKey(fs.readFileSync(`${dir}/${file}`)).export({ format: 'jwk' });
    jwks.keys.push({ ...jwk, kid, use: 'sig' });
  }
  const log = [];
  const decode = (jwt) => {
    try {
      return { header: jose.decodeProtectedHeader(jwt), claims: jose.decodeJwt(jwt) };
    } catch {
      return { header: undefined, claims: undefined };
    }
  };
  const keySet = jose.createLocalJWKSet(jwks);

  async function bearerGrant(ctx) {
    const { assertion, scope } = ctx.oidc.params;
    const d = decode(String(assertion || ''));
    const rec = { route: 'jwt_bearer', header: d.header, claims: d.claims, ok: false };
    log.push(rec);
    let payload;
    try {
      ({ payload } = await jose.jwtVerify(String(assertion || ''), keySet, {
        issuer: SERVICE,
        audience: `${env.ISSUER}/token`,
        algorithms: ['RS256', 'PS256', 'ES256', 'EdDSA', 'Ed25519'],
        requiredClaims: ['exp', 'iat', 'sub'],
        maxTokenAge: '1h',
      }));
    } catch (err) {
      rec.reason = err.code || err.message;
      throw new errors.InvalidGrant(`assertion refused: ${rec.reason}`);
    }
    rec.ok = true;
    const at = new ctx.oidc.provider.AccessToken({
      accountId: payload.sub,
      client: ctx.oidc.client,
      gty: 'jwt_bearer',
      scope: scope || payload.scope || 'read',
    });
    const value = await at.save();
    ctx.body = { access_token: value, token_type: 'Bearer', expires_in: at.expiration, scope: at.scope };
  }

  return {
    clients: [
      {
        client_id: 'pkjwt-client',
        token_endpoint_auth_method: 'private_key_jwt',
        jwks,
        grant_types: ['authorization_code', 'refresh_token', 'client_credentials',
          'urn:ietf:params:oauth:grant-type:device_code'],
        response_types: ['code'],
        redirect_uris: env.WEB_REDIRECTS,
      },
      {
        client_id: 'csjwt-client',
        client_secret: CSJWT_SECRET,
        token_endpoint_auth_method: 'client_secret_jwt',
        grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
        response_types: ['code'],
        redirect_uris: env.WEB_REDIRECTS,
      },
      {
        client_id: 'bearer-client',
        token_endpoint_auth_method: 'none',
        grant_types: [BEARER_GRANT],
        response_types: [],
        redirect_uris: [],
      },
    ],
    setup(provider) {
      provider.registerGrantType(BEARER_GRANT, bearerGrant, ['assertion', 'scope']);
      provider.on('server_error', (ctx, err) => console.error(`server_error: ${err.stack || err}`));
      // after each call: what the client sent to authenticate (no secret,
      // no signature: the assertion's header and claims only)
      provider.use(async (ctx, next) => {
        await next();
        const route = ctx.oidc?.route;
        if (!['token', 'revocation', 'device_authorization', 'pushed_authorization_request'].includes(route)) return;
        const body = ctx.oidc.body || {};
        const rec = {
          route,
          grant_type: body.grant_type,
          client_id: body.client_id,
          client_assertion_type: body.client_assertion_type,
          client_secret_sent: body.client_secret !== undefined,
          basic_auth: /^basic /i.test(ctx.get('authorization') || ''),
          status: ctx.status,
          error: ctx.status >= 400 ? ctx.body?.error : undefined,
        };
        if (body.client_assertion !== undefined) {
          const d = decode(String(body.client_assertion));
          rec.assertion_header = d.header;
          rec.assertion_claims = d.claims;
        }
        log.push(rec);
        if (log.length > 1000) log.shift();
      });
    },
    async route(req, res, url) {
      if (req.method === 'GET' && url.pathname === '/jwt-auth/log') {
        env.send(res, 200, log);
        return true;
      }
      if (req.method === 'POST' && url.pathname === '/jwt-auth/reset') {
        log.length = 0;
        env.send(res, 200, { ok: true });
        return true;
      }
      return false;
    },
  };
};
