// Routes for refresh.on_body / refresh.when (spec/refresh_rules_spec.lua)
// and token_metadata (spec/token_metadata_spec.lua). Tokens are those of
// the server (ctx.newToken); /invalidate-all makes every one refused.
//   POST /rules/token            an OAuth token endpoint: client_credentials
//        and refresh_token grants; refresh_token "dead" gets 400
//        invalid_grant. Every reply carries instance_url
//        http://127.0.0.1:PORT/rules/i<N> where N counts the tokens issued
//        for ?key= (1, 2, ...), and meta.region = "region-<N>"; ?no_instance=N
//        leaves instance_url out of the Nth reply, ?bad_instance=N makes it
//        "not a url".
//   POST /rules/login            a custom-token login (JSON reply
//        { data: { token, ttl, instance: { url } } }), same instance count.
//   GET  /rules/i<N>/me          (N = 1..20) 200 { instance: N, path } for a
//        valid token, else 401.
//   GET  /rules/body200          200 { data: "ok" } for a valid token, else
//        200 { error: { code: "TOKEN_EXPIRED" } }.
//   GET  /rules/body400          200 { data: "ok" } for a valid token, else
//        400 { error: { code: ?code or "TOKEN_EXPIRED", num: 1001 } }.
//   GET  /rules/always-expired   200 { error: { code: "TOKEN_EXPIRED" } }, whatever the token.
//   GET  /rules/header-expired   200 { data: "ok" } for a valid token, else
//        200 with header x-token-state: expired and body { data: null }.
// The request log (/requests?path=...) shows what each route received.
module.exports = (ctx) => {
  const issued = {}; // key -> tokens issued
  const valid = (req, q) => {
    const t = ctx.token(ctx.bearer(req, q));
    return Boolean(t && t.valid && (t.exp === undefined || t.exp > Date.now() / 1000));
  };
  const nextInstance = (q) => {
    const key = q.key || 'default';
    issued[key] = (issued[key] || 0) + 1;
    return issued[key];
  };
  const origin = `http://127.0.0.1:${ctx.port}`;
  const routes = {
    '/rules/token': (req, res, q, body) => {
      const p = { ...q, ...body };
      if (p.grant_type === 'refresh_token' && p.refresh_token === 'dead') {
        return ctx.send(res, 400, { error: 'invalid_grant', error_description: 'refresh token revoked' });
      }
      const n = nextInstance(q);
      const r = ctx.tokenReply(q, 'rules');
      r.instance_url = `${origin}/rules/i${n}`;
      r.meta = { region: `region-${n}` };
      if (q.no_instance === String(n)) delete r.instance_url;
      if (q.bad_instance === String(n)) r.instance_url = 'not a url';
      return ctx.send(res, 200, r);
    },
    '/rules/login': (req, res, q) => {
      const n = nextInstance(q);
      return ctx.send(res, 200, {
        data: { token: ctx.newToken('login', 3600), ttl: 3600, instance: { url: `${origin}/rules/i${n}` } },
      });
    },
    '/rules/body200': (req, res, q) => (valid(req, q)
      ? ctx.send(res, 200, { data: 'ok' })
      : ctx.send(res, 200, { error: { code: 'TOKEN_EXPIRED' } })),
    '/rules/body400': (req, res, q) => (valid(req, q)
      ? ctx.send(res, 200, { data: 'ok' })
      : ctx.send(res, 400, { error: { code: q.code || 'TOKEN_EXPIRED', num: 1001 } })),
    '/rules/always-expired': (req, res) => ctx.send(res, 200, { error: { code: 'TOKEN_EXPIRED' } }),
    '/rules/header-expired': (req, res, q) => (valid(req, q)
      ? ctx.send(res, 200, { data: 'ok' })
      : ctx.send(res, 200, { data: null }, { 'x-token-state': 'expired' })),
  };
  for (let n = 1; n <= 20; n += 1) {
    routes[`/rules/i${n}/me`] = (req, res, q) => (valid(req, q)
      ? ctx.send(res, 200, { instance: n, path: `/rules/i${n}/me` })
      : ctx.send(res, 401, { error: 'invalid_token' }));
  }
  return routes;
};
