// A dishonest authorization server for spec/discovery_spec.lua: what
// oidc-provider will not do. Each "server" lives under its own issuer path
// /dis/<name> (so RFC 8414's path insertion rule is exercised too), and
// every request is recorded by server.js (count them with /requests?path=).
//
//   /.well-known/openid-configuration/dis/<name>   never served (404, server.js):
//   /dis/<name>/.well-known/openid-configuration   OpenID Connect metadata, for
//       name = wrong-issuer   names another issuer
//              plain-pkce     code_challenge_methods_supported: ["plain"]
//              maxage         Cache-Control: max-age=2
//              nostore        Cache-Control: no-store
//              iss            advertises authorization_response_iss_parameter_supported
//              good           plain metadata, no caching headers, no iss support
//   /.well-known/oauth-authorization-server/dis/oauth-only
//                                                  RFC 8414 metadata (the OpenID
//       location of this one answers 404)
//   /dis/<name>/authorize   redirects to redirect_uri with code, state and
//       ?iss_mode=wrong (a wrong iss), none (no iss), same (the issuer) or
//       origin (another origin's URL); default: the issuer
//   /dis/<name>/token       a good token reply (counted: it must stay 0 when
//       a response is refused)
'use strict';

const NAMES = ['wrong-issuer', 'plain-pkce', 'maxage', 'nostore', 'iss', 'good', 'oauth-only'];

module.exports = (ctx) => {
  const base = `http://127.0.0.1:${ctx.port}`;
  const issuerOf = (name) => `${base}/dis/${name}`;

  function metadata(name) {
    const iss = issuerOf(name);
    const doc = {
      issuer: name === 'wrong-issuer' ? `${base}/dis/someone-else` : iss,
      authorization_endpoint: `${iss}/authorize`,
      token_endpoint: `${iss}/token`,
      revocation_endpoint: `${iss}/revoke`,
      jwks_uri: `${iss}/jwks`,
      response_types_supported: ['code'],
      code_challenge_methods_supported: name === 'plain-pkce' ? ['plain'] : ['S256', 'plain'],
    };
    if (name === 'iss') doc.authorization_response_iss_parameter_supported = true;
    const headers = {};
    if (name === 'maxage') headers['cache-control'] = 'max-age=2';
    else if (name === 'nostore') headers['cache-control'] = 'no-store';
    else headers['cache-control'] = '';  // none (server.js adds no-store by default)
    return [doc, headers];
  }

  const routes = {};
  for (const name of NAMES) {
    const iss = issuerOf(name);
    if (name === 'oauth-only') {
      routes[`/.well-known/oauth-authorization-server/dis/${name}`] = (req, res) => {
        const [doc, headers] = metadata(name);
        ctx.send(res, 200, doc, headers);
      };
    } else {
      routes[`/dis/${name}/.well-known/openid-configuration`] = (req, res) => {
        const [doc, headers] = metadata(name);
        ctx.send(res, 200, doc, headers);
      };
    }
    routes[`/dis/${name}/authorize`] = (req, res, q) => {
      const cb = new URL(q.redirect_uri);
      cb.searchParams.set('code', `code-${Math.random().toString(36).slice(2, 10)}`);
      cb.searchParams.set('state', q.state || '');
      const mode = q.iss_mode || 'same';
      if (mode === 'same') cb.searchParams.set('iss', iss);
      else if (mode === 'wrong') cb.searchParams.set('iss', `${base}/dis/someone-else`);
      else if (mode === 'origin') cb.searchParams.set('iss', 'http://127.0.0.1:1/dis');
      res.writeHead(302, { location: cb.toString(), 'content-length': 0 });
      res.end();
    };
    routes[`/dis/${name}/token`] = (req, res, q) => ctx.send(res, 200, ctx.tokenReply(q));
    routes[`/dis/${name}/revoke`] = (req, res) => ctx.send(res, 200, '');
  }
  return routes;
};
