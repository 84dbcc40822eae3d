// Pushed authorization requests (RFC 9126) for the oidc peer. oidc-provider
// 9 has the PAR endpoint (/request) on by default; this file makes it
// explicit and adds what the specs need:
//
//   PAR_REQUIRED=1 (environment; info.new{ par_required = 1 }): the server
//     metadata says require_pushed_authorization_requests: true and every
//     client must push (a private instance: the shared one stays as it is).
//   par-client (client_secret_basic) and par-public-client (native, any
//     loopback port, auth none): registered with
//     require_pushed_authorization_requests: true, so the authorization
//     endpoint refuses them a request that was not pushed.
//
// GET /test/stats carries `par`: { total, ok, error, requests: [...] },
// each request the parameters the PAR endpoint received without secrets
// (names, and the values of response_type, client_id, redirect_uri, scope,
// state, code_challenge, code_challenge_method, nonce, resource), its
// status and error, and whether the client authenticated with a header.
const SHOWN = ['response_type', 'client_id', 'redirect_uri', 'scope', 'state', 'code_challenge',
  'code_challenge_method', 'nonce', 'resource', 'prompt'];

export default function par(env) {
  const required = process.env.PAR_REQUIRED === '1';
  const clients = [
    {
      client_id: 'par-client',
      client_secret: 'par:s3cret/+ %',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: env.WEB_REDIRECTS,
      require_pushed_authorization_requests: true,
    },
    {
      client_id: 'par-public-client',
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback', env.CALLBACK],
      require_pushed_authorization_requests: true,
    },
  ];

  function stats() {
    const s = env.stats();
    if (!s.par) s.par = { total: 0, ok: 0, error: 0, requests: [] };
    return s.par;
  }

  return {
    clients,
    features: {
      pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: required },
    },
    setup(provider) {
      provider.use(async (ctx, next) => {
        await next();
        if (ctx.oidc?.route !== 'pushed_authorization_request') return;
        const body = ctx.oidc.body || {};
        const rec = {
          params: Object.keys(body).sort(),
          status: ctx.status,
          client_auth: /^basic /i.test(ctx.get('authorization')) ? 'basic'
            : (body.client_secret !== undefined ? 'post' : 'none'),
          error: ctx.status >= 400 ? ctx.body?.error : undefined,
        };
        for (const k of SHOWN) if (body[k] !== undefined) rec[k] = body[k];
        const st = stats();
        st.total += 1;
        st[ctx.status < 400 ? 'ok' : 'error'] += 1;
        st.requests.push(rec);
        if (st.requests.length > 200) st.requests.shift();
      });
    },
  };
}
