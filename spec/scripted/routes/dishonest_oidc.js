// A dishonest OpenID Connect provider for spec/oidc_rp_spec.lua: id_tokens
// that oidc-provider would never issue, signed here with node:crypto and keys
// made at start-up (so the client's verification is checked against an
// independent signer). Issuer: http://127.0.0.1:PORT/doidc. Every request is
// recorded by server.js (count with /requests?path=).
//
//   /doidc/.well-known/openid-configuration   metadata (no caching headers)
//   /doidc/jwks        the public keys: rsa-1 (RS256, PS256), ec-1 (ES256),
//                      ed-1 (EdDSA); plus rsa-new once a "rotated" token was issued
//   /doidc/authorize   302 to redirect_uri with state, iss and a code that
//                      carries the request's nonce, client_id and ?mode=
//   /doidc/token       authorization_code: a token reply whose id_token is shaped
//                      by the mode; refresh_token: the same, with the refresh
//                      token's mode (?refresh_mode= at /authorize)
//   /doidc/api         200 for a live access token issued here, else 401
//   /doidc/forget      unpublishes rsa-new (call before a rotation test)
// Modes: good (RS256), ps256, es256, eddsa, multi_aud_azp, none, hs256_pub,
//   wrong_aud, multi_aud, wrong_azp, expired, iat_future, bad_sig, no_nonce,
//   wrong_nonce, wrong_iss, rotated, unknown_kid, no_id_token, other_sub (refresh),
//   at_hash, es256_at_hash (the access token's), wrong_at_hash (another's).
'use strict';

const crypto = require('node:crypto');

module.exports = (ctx) => {
  const base = `http://127.0.0.1:${ctx.port}`;
  const ISS = `${base}/doidc`;
  const gen = (type, opts) => crypto.generateKeyPairSync(type, opts);
  const keys = {
    'rsa-1': gen('rsa', { modulusLength: 2048 }),
    'ec-1': gen('ec', { namedCurve: 'P-256' }),
    'ed-1': gen('ed25519'),
    'rsa-new': gen('rsa', { modulusLength: 2048 }),
    'rsa-never': gen('rsa', { modulusLength: 2048 }),
  };
  let published = false;   // rsa-new in the JWKS
  const b64 = (v) => Buffer.from(v).toString('base64url');
  const jwk = (kid) => ({ ...keys[kid].publicKey.export({ format: 'jwk' }), kid, use: 'sig' });

  function sign(alg, kid, claims, extra = {}) {
    const header = { alg, typ: 'JWT', ...extra };
    if (kid) header.kid = kid;
    const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(claims))}`;
    let sig;
    const key = keys[kid] && keys[kid].privateKey;
    if (alg === 'none') sig = Buffer.alloc(0);
    else if (alg === 'HS256') {
      // the algorithm-confusion attack: HMAC keyed with the public key
      sig = crypto.createHmac('sha256', keys['rsa-1'].publicKey.export({ type: 'spki', format: 'pem' })).update(input).digest();
    } else if (alg === 'RS256') sig = crypto.sign('sha256', Buffer.from(input), key);
    else if (alg === 'PS256') {
      sig = crypto.sign('sha256', Buffer.from(input), {
        key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32,
      });
    } else if (alg === 'ES256') sig = crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
    else if (alg === 'EdDSA') sig = crypto.sign(null, Buffer.from(input), key);
    return `${input}.${b64(sig)}`;
  }

  // OpenID Connect Core 3.1.3.6: the left half of SHA-256, base64url
  const atHash = (token) => b64(crypto.createHash('sha256').update(token).digest().subarray(0, 16));

  function idToken(mode, info, accessToken) {
    const now = Math.floor(Date.now() / 1000);
    const c = { iss: ISS, sub: 'user-1', aud: info.client_id, exp: now + 300, iat: now };
    if (info.nonce !== undefined) c.nonce = info.nonce;
    let alg = 'RS256';
    let kid = 'rsa-1';
    switch (mode) {
      case 'ps256': alg = 'PS256'; break;
      case 'es256': alg = 'ES256'; kid = 'ec-1'; break;
      case 'eddsa': alg = 'EdDSA'; kid = 'ed-1'; break;
      case 'multi_aud_azp': c.aud = [info.client_id, 'other-client']; c.azp = info.client_id; break;
      case 'none': alg = 'none'; kid = undefined; break;
      case 'hs256_pub': alg = 'HS256'; break;
      case 'wrong_aud': c.aud = 'other-client'; break;
      case 'multi_aud': c.aud = [info.client_id, 'other-client']; break;
      case 'wrong_azp': c.azp = 'other-client'; break;
      case 'expired': c.exp = now - 600; c.iat = now - 900; break;
      case 'iat_future': c.iat = now + 600; c.exp = now + 900; break;
      case 'no_nonce': delete c.nonce; break;
      case 'wrong_nonce': c.nonce = 'not-the-nonce'; break;
      case 'wrong_iss': c.iss = `${base}/someone-else`; break;
      case 'rotated': kid = 'rsa-new'; published = true; break;
      case 'unknown_kid': kid = 'rsa-never'; break;
      case 'other_sub': c.sub = 'user-2'; break;
      case 'at_hash': c.at_hash = atHash(accessToken); break;
      case 'es256_at_hash': alg = 'ES256'; kid = 'ec-1'; c.at_hash = atHash(accessToken); break;
      case 'wrong_at_hash': c.at_hash = atHash(`${accessToken}x`); break;
      default: break;
    }
    const token = sign(alg, kid, c);
    if (mode === 'bad_sig') {
      // the claims changed after signing (sub user-1 -> user-9)
      const [h, , s] = token.split('.');
      return `${h}.${b64(JSON.stringify({ ...c, sub: 'user-9' }))}.${s}`;
    }
    return token;
  }

  const pack = (o) => b64(JSON.stringify(o));
  const unpack = (s) => { try { return JSON.parse(Buffer.from(String(s), 'base64url').toString()); } catch { return {}; } };

  return {
    '/doidc/.well-known/openid-configuration': (req, res) => ctx.send(res, 200, {
      issuer: ISS,
      authorization_endpoint: `${ISS}/authorize`,
      token_endpoint: `${ISS}/token`,
      jwks_uri: `${ISS}/jwks`,
      response_types_supported: ['code'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['RS256', 'PS256', 'ES256', 'EdDSA', 'HS256', 'none'],
      code_challenge_methods_supported: ['S256'],
    }, { 'cache-control': '' }),
    '/doidc/jwks': (req, res) => {
      const list = ['rsa-1', 'ec-1', 'ed-1'].map(jwk);
      if (published) list.push(jwk('rsa-new'));
      ctx.send(res, 200, { keys: list }, { 'cache-control': '' });
    },
    '/doidc/forget': (req, res) => { published = false; ctx.send(res, 200, { ok: true }); },
    '/doidc/authorize': (req, res, q) => {
      const cb = new URL(q.redirect_uri);
      cb.searchParams.set('code', pack({
        nonce: q.nonce, client_id: q.client_id, mode: q.mode || 'good', refresh_mode: q.refresh_mode || 'good',
      }));
      cb.searchParams.set('state', q.state || '');
      cb.searchParams.set('iss', ISS);
      res.writeHead(302, { location: cb.toString(), 'content-length': 0 });
      res.end();
    },
    '/doidc/token': (req, res, q, body) => {
      let info;
      let mode;
      if (body.grant_type === 'refresh_token') {
        info = unpack(String(body.refresh_token).split('.')[0]);
        mode = info.refresh_mode;
        info = { ...info, nonce: undefined };
      } else {
        info = unpack(body.code);
        mode = info.mode;
      }
      const out = ctx.tokenReply({});
      out.refresh_token = `${pack({ client_id: info.client_id, refresh_mode: info.refresh_mode })}.${out.refresh_token}`;
      if (mode !== 'no_id_token' && !(body.grant_type === 'refresh_token' && mode === 'good_none')) {
        out.id_token = idToken(mode, info, out.access_token);
      }
      ctx.send(res, 200, out);
    },
    '/doidc/api': (req, res, q) => {
      const t = ctx.token(ctx.bearer(req, q));
      if (!t || !t.valid) return ctx.send(res, 401, { error: 'invalid_token' });
      return ctx.send(res, 200, { ok: true });
    },
  };
};
