// DPoP (RFC 9449) for the oidc peer: oidc-provider's features.dPoP (proofs
// at the token endpoint, DPoP-bound tokens with cnf.jkt), a DPoP-protected
// resource, and switches to demand nonces. TEST ONLY.
//
// Routes (outside /test/, which server.js answers itself):
//   ANY  /api/dpop            the resource: `Authorization: DPoP <token>` and a
//                             `DPoP` proof checked against the token's jkt
//                             (signature, typ, htm, htu, ath, jti, iat, nonce);
//                             200 { ok, jkt, kind } or 401 with WWW-Authenticate
//   ANY  /api/dpop-redirect   302 to /api/dpop (same origin)
//   POST /dpop-test/config    token_nonce=true|false (the token endpoint demands
//                             a nonce), api_nonce=true|false (so does /api/dpop;
//                             a fresh nonce each time it is switched on)
//   GET  /dpop-test/log       { token = [...], api = [...] }: what each request
//                             carried (no token, only its sha256)
//   GET  /dpop-test/tokens?token=...  the peer's view of a token: { jkt, kind, token_type }
//   POST /dpop-test/reset     switches off, logs cleared
import crypto from 'node:crypto';
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, EmbeddedJWK, jwtVerify } from 'jose';

const b64sha = (s) => crypto.createHash('sha256').update(String(s)).digest('base64url');
const hexsha = (s) => crypto.createHash('sha256').update(String(s)).digest('hex');

export default function dpop(env) {
  const state = { token_nonce: false, api_nonce: undefined, token: [], api: [], jtis: new Set() };
  const reset = () => {
    state.token_nonce = false;
    state.api_nonce = undefined;
    state.token = [];
    state.api = [];
  };

  // what a proof says, unverified (for the log)
  const peek = (proof) => {
    try {
      const h = decodeProtectedHeader(proof);
      const p = decodeJwt(proof);
      return { typ: h.typ, alg: h.alg, jwk_kty: h.jwk?.kty, htm: p.htm, htu: p.htu, ath: p.ath,
        nonce: p.nonce, jti: p.jti, iat: p.iat, has_private: h.jwk?.d !== undefined };
    } catch {
      return { undecodable: true };
    }
  };

  async function resource(req, res, url) {
    const authz = req.headers.authorization || '';
    const m = /^DPoP\s+(.+)$/.exec(authz);
    const proof = req.headers.dpop;
    const rec = { method: req.method, path: url.pathname, scheme: authz.split(' ')[0],
      token_sha256: m ? hexsha(m[1].trim()) : undefined, proof: proof ? peek(proof) : undefined };
    state.api.push(rec);
    const deny = (error, desc, extra = {}) => {
      rec.status = 401;
      rec.error = error;
      rec.error_description = desc;
      return env.send(res, 401, { error, error_description: desc }, {
        'www-authenticate': `DPoP error="${error}", error_description="${desc}", algs="ES256 EdDSA RS256 PS256"`,
        ...extra,
      });
    };
    if (!m) return deny('invalid_token', 'no DPoP authorization');
    const value = m[1].trim();
    const found = await env.findToken(value);
    if (!found) return deny('invalid_token', 'unknown token');
    rec.token_jkt = found.token.jkt;
    if (!proof) return deny('invalid_dpop_proof', 'no proof');
    let jwt;
    try {
      jwt = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256', 'EdDSA', 'RS256', 'PS256'] });
    } catch (e) {
      return deny('invalid_dpop_proof', `signature: ${e.code || e.message}`);
    }
    const p = jwt.payload;
    rec.proof_jkt = await calculateJwkThumbprint(jwt.protectedHeader.jwk);
    rec.checks = {
      htm: p.htm === req.method,
      htu: p.htu === `${env.ISSUER}${url.pathname}`,
      ath: p.ath === b64sha(value),
      jti: typeof p.jti === 'string' && p.jti.length >= 16 && !state.jtis.has(p.jti),
      iat: typeof p.iat === 'number' && Math.abs(p.iat - Date.now() / 1000) < 60,
      jkt: rec.proof_jkt === found.token.jkt,
    };
    if (typeof p.jti === 'string') state.jtis.add(p.jti);
    for (const [k, ok] of Object.entries(rec.checks)) {
      if (!ok) return deny('invalid_dpop_proof', `${k} mismatch`);
    }
    if (state.api_nonce && p.nonce !== state.api_nonce) {
      return deny('use_dpop_nonce', 'a nonce is required', { 'dpop-nonce': state.api_nonce });
    }
    rec.status = 200;
    return env.send(res, 200, { ok: true, jkt: found.token.jkt, kind: found.kind, nonce: p.nonce },
      state.api_nonce ? { 'dpop-nonce': state.api_nonce } : {});
  }

  async function route(req, res, url) {
    if (url.pathname === '/api/dpop') {
      await resource(req, res, url);
      return true;
    }
    if (url.pathname === '/api/dpop-redirect') {
      // a same-origin redirect to the resource (the next hop needs its own proof)
      state.api.push({ method: req.method, path: url.pathname, status: 302, proof: req.headers.dpop ? peek(req.headers.dpop) : undefined });
      res.writeHead(302, { location: '/api/dpop', 'content-length': 0 });
      res.end();
      return true;
    }
    if (!url.pathname.startsWith('/dpop-test/')) return false;
    const p = await env.params(req, url);
    const on = (v) => v === true || v === 'true' || v === '1';
    switch (`${req.method} ${url.pathname}`) {
      case 'POST /dpop-test/config':
        if (p.token_nonce !== undefined) state.token_nonce = on(p.token_nonce);
        if (p.api_nonce !== undefined) {
          state.api_nonce = on(p.api_nonce) ? crypto.randomBytes(18).toString('base64url') : undefined;
        }
        env.send(res, 200, { token_nonce: state.token_nonce, api_nonce: state.api_nonce });
        return true;
      case 'POST /dpop-test/reset':
        reset();
        env.send(res, 200, { ok: true });
        return true;
      case 'GET /dpop-test/log':
        env.send(res, 200, { token: state.token, api: state.api });
        return true;
      case 'GET /dpop-test/tokens': {
        const found = await env.findToken(p.token);
        env.send(res, found ? 200 : 404, found
          ? { jkt: found.token.jkt, kind: found.kind, token_type: found.token.tokenType } : { error: 'unknown' });
        return true;
      }
      default:
        env.send(res, 404, { error: 'no such dpop test route' });
        return true;
    }
  }

  return {
    features: {
      dPoP: {
        enabled: true,
        nonceSecret: crypto.randomBytes(32),
        requireNonce: () => state.token_nonce,
      },
    },
    setup(provider) {
      // why a token request was refused (oidc-provider keeps it out of the
      // reply's error_description for invalid_grant)
      provider.on('grant.error', (ctx, err) => { ctx.state.grantErrorDetail = err.error_detail; });
      // what each token request's proof said, and the answer
      provider.use(async (ctx, next) => {
        await next();
        if (ctx.oidc?.route !== 'token') return;
        const proof = ctx.get('dpop');
        const body = ctx.oidc.body || {};
        const ok = ctx.status === 200 && ctx.body && typeof ctx.body === 'object';
        state.token.push({
          grant_type: body.grant_type,
          status: ctx.status,
          error: ctx.body?.error,
          error_detail: ctx.state.grantErrorDetail,
          dpop_nonce_sent: ctx.response.get('dpop-nonce') || undefined,
          proof: proof ? peek(proof) : undefined,
          proof_jkt: proof ? await calculateJwkThumbprint(decodeProtectedHeader(proof).jwk).catch(() => undefined) : undefined,
          token_type: ok ? ctx.body.token_type : undefined,
          access_token_sha256: ok && ctx.body.access_token ? hexsha(ctx.body.access_token) : undefined,
        });
      });
    },
    route,
  };
}
