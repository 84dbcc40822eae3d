// OpenID Connect relying party (spec/oidc_rp_spec.lua): what each
// authorization request carried that the client must send (nonce, scope,
// client_id), recorded as the provider received it.
//   GET  /rp-test/authorizations    every authorization request since the last
//                                   POST /rp-test/reset: [{ client_id, scope, nonce, state_present }]
//   POST /rp-test/reset             forgets them
export default function oidcRp(env) {
  let seen = [];
  return {
    setup(provider) {
      provider.use(async (ctx, next) => {
        if (ctx.oidc?.route === undefined && /^\/auth(\?|$)/.test(ctx.url)) {
          const p = ctx.method === 'GET' ? Object.fromEntries(new URL(ctx.url, env.ISSUER).searchParams) : {};
          seen.push({ client_id: p.client_id, scope: p.scope, nonce: p.nonce, state_present: p.state !== undefined });
        }
        await next();
      });
    },
    async route(req, res, url) {
      if (url.pathname === '/rp-test/authorizations' && req.method === 'GET') {
        env.send(res, 200, seen);
        return true;
      }
      if (url.pathname === '/rp-test/reset' && req.method === 'POST') {
        seen = [];
        env.send(res, 200, { ok: true });
        return true;
      }
      return false;
    },
  };
}
