// Routes for spec/hooks_spec.lua (hooks and account health):
//   /hooks/token [ttl=N]   a token endpoint whose behaviour /hooks/mode sets:
//                          "ok" (a good token reply, expires_in = ttl, default
//                          3600), "down" (503 text/plain), "invalid_grant" (400)
//   /hooks/mode?m=M        sets that behaviour (recorded like any request)
// The tokens it issues are accepted by /resource.
'use strict';

module.exports = (ctx) => {
  let mode = 'ok';
  return {
    '/hooks/mode': (req, res, q) => {
      mode = q.m || 'ok';
      ctx.send(res, 200, { mode });
    },
    '/hooks/token': (req, res, q) => {
      if (mode === 'down') return ctx.send(res, 503, 'token endpoint down (scripted)');
      if (mode === 'invalid_grant') {
        return ctx.send(res, 400, { error: 'invalid_grant', error_description: 'refresh token revoked (scripted)' });
      }
      return ctx.send(res, 200, ctx.tokenReply(q, 'hk'));
    },
  };
};
