// A GitHub App's installation token endpoint, for {jwt} in a custom_token
// header (spec/jwt_auth_spec.lua). The JWT is verified with node's crypto,
// independently of connkit's C.
//   POST /github/app/key         JSON { pem, iss }: the app's public key (SPKI
//        PEM, RSA) and the iss its JWTs must carry; replaces the previous one
//   POST /github/app/installations/4242/access_tokens   needs
//        `Authorization: Bearer <JWT>`: RS256, signed by that key, iss as set,
//        iat not in the future (60 s slack), exp in the future and at most
//        11 minutes after iat (GitHub: 10 minutes, iat may be 60 s back).
//        201 { token, expires_at } (a token of this server, 1 hour), else 401
//        { message } saying why.
//   GET  /github/installation/repositories   200 for a live token issued here, else 401
// The request log (/requests?path=...) shows what each route received.
const crypto = require('node:crypto');

module.exports = (ctx) => {
  let app; // { key, iss }
  const b64json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString());

  // The reason a JWT is refused, or undefined when it is good.
  function refuse(jwt) {
    if (!app) return 'no app key registered';
    const parts = String(jwt || '').split('.');
    if (parts.length !== 3) return 'A JSON web token could not be decoded';
    let header, claims;
    try {
      header = b64json(parts[0]);
      claims = b64json(parts[1]);
    } catch {
      return 'A JSON web token could not be decoded';
    }
    if (header.alg !== 'RS256') return `alg ${header.alg} is not RS256`;
    const ok = crypto.verify('sha256', Buffer.from(`${parts[0]}.${parts[1]}`), app.key,
      Buffer.from(parts[2], 'base64url'));
    if (!ok) return 'bad signature';
    const now = Date.now() / 1000;
    if (claims.iss !== app.iss) return `iss ${claims.iss} is not the app`;
    if (typeof claims.iat !== 'number' || claims.iat > now + 60) return "'Issued at' claim (iat) must be an Integer representing a time in the past";
    if (typeof claims.exp !== 'number' || claims.exp <= now) return "'Expiration time' claim ('exp') is too far in the future or expired";
    if (claims.exp - claims.iat > 660) return "'Expiration time' claim ('exp') is too far in the future";
    return undefined;
  }

  return {
    '/github/app/key': (req, res, q, body) => {
      app = { key: crypto.createPublicKey(body.pem), iss: String(body.iss) };
      ctx.send(res, 200, { ok: true });
    },
    '/github/app/installations/4242/access_tokens': (req, res) => {
      if (req.method !== 'POST') return ctx.send(res, 404, { message: 'Not Found' });
      const m = /^bearer\s+(.+)$/i.exec(req.headers.authorization || '');
      const why = refuse(m && m[1]);
      if (why) return ctx.send(res, 401, { message: why });
      const ttl = 3600;
      return ctx.send(res, 201, {
        token: ctx.newToken('ghs', ttl),
        expires_at: new Date(Date.now() + ttl * 1000).toISOString().replace(/\.\d+Z$/, 'Z'),
        permissions: { contents: 'read' },
        repository_selection: 'all',
      });
    },
    '/github/installation/repositories': (req, res, q) => {
      const t = ctx.token(ctx.bearer(req, q));
      if (!t || !t.valid || (t.exp !== undefined && t.exp <= Date.now() / 1000)) {
        return ctx.send(res, 401, { message: 'Bad credentials' });
      }
      return ctx.send(res, 200, { total_count: 0, repositories: [] });
    },
  };
};
