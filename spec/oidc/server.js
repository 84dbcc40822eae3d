// connkit test peer: a real OAuth 2.0 authorization server (oidc-provider)
// on 127.0.0.1 with headless interactions and test-control routes.
// TEST ONLY: it logs in a fixed user and consents to everything by itself.
//
// Environment:
//   PORT           port to listen on (required; bound to 127.0.0.1 only)
//   ACCESS_TTL     access-token lifetime in seconds (default 3600)
//   CC_TTL         client-credentials token lifetime (default ACCESS_TTL)
//   REFRESH_TTL    refresh-token lifetime (default 86400)
//   DEVICE_TTL     device-code lifetime (default 600)
//   DEVICE_INTERVAL  `interval` added to device authorization replies (default 1)
//
// Clients, routes and the headless flows: see spec/peers/oidc.lua (info fields).
import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import Provider, { errors as providerErrors } from 'oidc-provider';

const PORT = Number(process.env.PORT);
if (!Number.isInteger(PORT) || PORT <= 0) {
  console.error('PORT must be set');
  process.exit(2);
}
const num = (name, dflt) => {
  const v = process.env[name];
  return v !== undefined && v !== '' ? Number(v) : dflt;
};
// Defaults from the environment; POST /test/config changes them at run time
// (POST /test/reset restores these).
const DEFAULTS = Object.freeze({
  access_ttl: num('ACCESS_TTL', 3600),
  cc_ttl: num('CC_TTL', num('ACCESS_TTL', 3600)),
  refresh_ttl: num('REFRESH_TTL', 86400),
  device_ttl: num('DEVICE_TTL', 600),
  device_interval: num('DEVICE_INTERVAL', 1),
  rotate: true,     // rotate refresh tokens on every use
  slow_down: 0,     // the next N pending device polls get slow_down instead
});
const config = { ...DEFAULTS };

const ISSUER = `http://127.0.0.1:${PORT}`;
const CALLBACK = `${ISSUER}/test/callback`;
const RESOURCE = `${ISSUER}/api`;
const USER = 'tester';

// Web clients may redirect to the peer's own callback sink or to a fixed
// loopback port; the public client is "native", so any port of
// http://127.0.0.1/callback is accepted (RFC 8252 7.3).
const WEB_REDIRECTS = [CALLBACK, 'http://127.0.0.1:8765/callback'];
const clients = [
  {
    client_id: 'basic-client',
    client_secret: 'p@ss:w%rd+&/ ~',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token',
      'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
    redirect_uris: WEB_REDIRECTS,
  },
  {
    client_id: 'post-client',
    client_secret: 'post:s3cret&=+%',
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    redirect_uris: WEB_REDIRECTS,
  },
  {
    client_id: 'public-client',
    token_endpoint_auth_method: 'none',
    application_type: 'native',
    grant_types: ['authorization_code', 'refresh_token',
      'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback', CALLBACK],
  },
  {
    client_id: 'cc-client',
    client_secret: 'cc:s3cret/+ %',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
  },
];

// ---- test-side state --------------------------------------------------------
const sha256 = (s) => crypto.createHash('sha256').update(String(s)).digest('hex');
let stats;
let tokenLog;
let apiLog;
function resetStats() {
  stats = {
    token: { total: 0, ok: 0, error: 0, by_grant_type: {} },
    device_authorization: 0,
    revocation: 0,
    introspection: 0,
    authorization: 0,
    api: { total: 0, ok: 0, unauthorized: 0 },
  };
  tokenLog = [];
  apiLog = [];
}
resetStats();
let nextInteraction = 'approve'; // one-shot: 'deny' makes the next interaction refuse

// ---- extensions ---------------------------------------------------------------
// One file per feature in spec/oidc/ext/*.mjs, loaded in name order. Each
// exports a default function (env) returning any of:
//   clients   more client registrations
//   features  oidc-provider features to merge over the ones below
//   options   other provider options to merge (a feature's own settings)
//   setup(provider)            called once the provider exists
//   route(req, res, url)       a plain route: returns true when it answered
const env = {
  ISSUER, PORT, CALLBACK, RESOURCE, USER, WEB_REDIRECTS, Provider,
  stats: () => stats, send: (...a) => send(...a), params: (...a) => params(...a),
  findToken: (...a) => findToken(...a), callback: () => callback,
};
const extensions = [];
const extDir = new URL('./ext/', import.meta.url);
if (fs.existsSync(extDir)) {
  for (const f of fs.readdirSync(extDir).filter((n) => n.endsWith('.mjs')).sort()) {
    extensions.push((await import(new URL(f, extDir).href)).default(env) || {});
  }
}
const extraFeatures = {};
const extraOptions = {};
for (const e of extensions) {
  if (e.clients) clients.push(...e.clients);
  Object.assign(extraFeatures, e.features || {});
  Object.assign(extraOptions, e.options || {});
}

// ---- provider ---------------------------------------------------------------
const provider = new Provider(ISSUER, {
  ...extraOptions,
  clients,
  cookies: { keys: ['connkit-test-cookie-key-not-secret'] },
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    async claims() {
      return { sub, name: 'Test User', email: 'tester@example.test' };
    },
  }),
  scopes: ['openid', 'offline_access', 'profile', 'email', 'read', 'write', 'api'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // no `resource` parameter: tokens are for userinfo (auth code) or carry no
      // audience (client credentials); both are opaque and accepted by /api/me.
      defaultResource: async () => undefined,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, indicator) => {
        if (indicator !== RESOURCE && indicator !== 'urn:connkit:api') {
          throw new providerErrors.InvalidTarget();
        }
        return {
          scope: 'read write api',
          audience: indicator,
          accessTokenTTL: ctx.oidc.route === 'token' && ctx.oidc.params.grant_type === 'client_credentials'
            ? config.cc_ttl : config.access_ttl,
          accessTokenFormat: 'opaque',
        };
      },
    },
    ...extraFeatures,
  },
  // a refresh token for every client allowed the refresh_token grant (no
  // offline_access needed), never tied to the browser session, always rotated
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  expiresWithSession: async () => false,
  rotateRefreshToken: () => config.rotate,
  ttl: {
    AccessToken: () => config.access_ttl,
    ClientCredentials: () => config.cc_ttl,
    RefreshToken: () => config.refresh_ttl,
    DeviceCode: () => config.device_ttl,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 600,
    Session: 86400,
    Grant: 86400,
  },
  interactions: {
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
});
provider.proxy = false;
for (const e of extensions) if (e.setup) e.setup(provider);

// What every token request carried, without secrets: parameter names, the
// non-secret values, and sha256 of the refresh token / code. Also adds
// `interval` to device authorization replies so polling specs stay fast.
provider.use(async (ctx, next) => {
  await next();
  const route = ctx.oidc?.route;
  if (!route) return;
  if (route === 'device_authorization') {
    stats.device_authorization += 1;
    if (ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
      ctx.body.interval = config.device_interval;
    }
  } else if (route === 'revocation') {
    stats.revocation += 1;
  } else if (route === 'introspection') {
    stats.introspection += 1;
  } else if (route === 'authorization') {
    stats.authorization += 1;
  } else if (route === 'token') {
    const body = ctx.oidc.body || {};
    const gt = String(body.grant_type || '');
    const authz = ctx.get('authorization');
    let clientId = body.client_id;
    if (!clientId && /^basic /i.test(authz)) {
      try {
        const dec = Buffer.from(authz.slice(6), 'base64').toString();
        clientId = decodeURIComponent(dec.split(':')[0].replace(/\+/g, ' '));
      } catch { /* left undefined */ }
    }
    if (gt === 'urn:ietf:params:oauth:grant-type:device_code' && config.slow_down > 0
        && ctx.body?.error === 'authorization_pending') {
      config.slow_down -= 1;
      ctx.body = { error: 'slow_down', error_description: 'poll less often (test peer)' };
    }
    const ok = ctx.status === 200;
    const entry = {
      n: stats.token.total + 1,
      time: Date.now() / 1000,
      method: ctx.method,
      content_type: ctx.get('content-type'),
      grant_type: gt,
      client_id: clientId,
      client_auth: /^basic /i.test(authz) ? 'basic' : (body.client_secret !== undefined ? 'post' : 'none'),
      params: Object.keys(body).sort(),
      status: ctx.status,
      error: ok ? undefined : ctx.body?.error,
      // the provider's reason, e.g. "refresh token already used" (never a secret)
      error_detail: ok ? undefined : ctx.state.grantErrorDetail,
    };
    for (const k of ['scope', 'resource', 'audience', 'redirect_uri', 'token_type_hint']) {
      if (body[k] !== undefined) entry[k] = body[k];
    }
    if (body.refresh_token !== undefined) entry.refresh_token_sha256 = sha256(body.refresh_token);
    if (body.code !== undefined) entry.code_sha256 = sha256(body.code);
    if (body.device_code !== undefined) entry.device_code_sha256 = sha256(body.device_code);
    if (body.code_verifier !== undefined) entry.code_verifier_length = String(body.code_verifier).length;
    if (ok && ctx.body && typeof ctx.body === 'object') {
      if (ctx.body.refresh_token) entry.issued_refresh_token_sha256 = sha256(ctx.body.refresh_token);
      if (ctx.body.access_token) entry.issued_access_token_sha256 = sha256(ctx.body.access_token);
      entry.expires_in = ctx.body.expires_in;
    }
    stats.token.total += 1;
    stats.token[ok ? 'ok' : 'error'] += 1;
    const g = stats.token.by_grant_type[gt] || (stats.token.by_grant_type[gt] = { total: 0, ok: 0, error: 0 });
    g.total += 1;
    g[ok ? 'ok' : 'error'] += 1;
    tokenLog.push(entry);
    if (tokenLog.length > 2000) tokenLog.shift();
    console.log(`token n=${entry.n} grant_type=${gt} client=${clientId} auth=${entry.client_auth} status=${ctx.status}`
      + (entry.error ? ` error=${entry.error}` : '')
      + (entry.refresh_token_sha256 ? ` rt_sha256=${entry.refresh_token_sha256.slice(0, 16)}` : ''));
  }
});

provider.on('grant.error', (ctx, err) => {
  ctx.state.grantErrorDetail = err?.error_detail;
});

// ---- helpers for the plain node routes ----------------------------------------
function send(res, status, obj, headers = {}) {
  const body = JSON.stringify(obj);
  res.writeHead(status, {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString()));
    req.on('error', reject);
  });
}

// Query and form body merged (body wins).
async function params(req, url) {
  const out = Object.fromEntries(url.searchParams);
  if (req.method === 'POST' || req.method === 'PUT') {
    const raw = await readBody(req);
    const cty = req.headers['content-type'] || '';
    if (raw && cty.includes('json')) Object.assign(out, JSON.parse(raw));
    else if (raw) Object.assign(out, Object.fromEntries(new URLSearchParams(raw)));
  }
  return out;
}

// An access token (authorization code / refresh / device) or a client
// credentials token, found in the provider's store; undefined if unknown,
// expired or revoked.
async function findToken(value) {
  if (!value) return undefined;
  const at = await provider.AccessToken.find(value);
  if (at && !at.isExpired) return { kind: 'access_token', token: at };
  const cc = await provider.ClientCredentials.find(value);
  if (cc && !cc.isExpired) return { kind: 'client_credentials', token: cc };
  return undefined;
}

// Auto login + consent: grants every requested scope, claim and resource.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params: p, session } = details;
  let result;
  if (nextInteraction === 'deny') {
    nextInteraction = 'approve';
    result = { error: 'access_denied', error_description: 'denied by the test peer' };
  } else if (prompt.name === 'login') {
    result = { login: { accountId: USER, amr: ['pwd'] } };
  } else {
    const accountId = session?.accountId || USER;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId: p.client_id });
    const d = prompt.details || {};
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    if (d.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    if (p.scope) grant.addOIDCScope(String(p.scope));
    result = { consent: { grantId: await grant.save() } };
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

// Approves or denies a pending device code by its user code, as the user
// would through the /device pages.
async function device(action, userCode) {
  if (!userCode) return [400, { error: 'user_code missing' }];
  const normalized = String(userCode).toUpperCase().replace(/\W/g, '');
  const code = await provider.DeviceCode.findByUserCode(normalized, { ignoreExpiration: true });
  if (!code) return [404, { error: 'unknown user_code' }];
  if (code.isExpired) return [410, { error: 'expired user_code' }];
  if (code.error || code.accountId) return [409, { error: 'user_code already used' }];
  if (action === 'deny') {
    code.error = 'access_denied';
    code.errorDescription = 'denied by the test peer';
  } else {
    const grant = new provider.Grant({ accountId: USER, clientId: code.clientId });
    const scope = code.params?.scope || code.scope;
    if (scope) grant.addOIDCScope(String(scope));
    code.accountId = USER;
    if (scope) code.scope = String(scope);
    code.authTime = Math.floor(Date.now() / 1000);
    code.amr = ['pwd'];
    code.grantId = await grant.save();
  }
  await code.save();
  return [200, { ok: true, action }];
}

// GET /api/me: a protected resource (RFC 6750 header or access_token query).
async function api(req, res, url) {
  stats.api.total += 1;
  const authz = req.headers.authorization || '';
  const m = /^bearer\s+(.+)$/i.exec(authz);
  const via = m ? 'header' : (url.searchParams.get('access_token') ? 'query' : undefined);
  const value = m ? m[1].trim() : url.searchParams.get('access_token');
  const found = await findToken(value);
  const rec = {
    n: stats.api.total,
    time: Date.now() / 1000,
    method: req.method,
    path: url.pathname,
    query: Object.fromEntries([...url.searchParams].filter(([k]) => k !== 'access_token')),
    headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== 'authorization')),
    via,
    token_sha256: value ? sha256(value) : undefined,
    status: found ? 200 : 401,
  };
  apiLog.push(rec);
  if (apiLog.length > 2000) apiLog.shift();
  if (!found) {
    stats.api.unauthorized += 1;
    const err = value ? ', error="invalid_token", error_description="token is invalid, expired or revoked"' : '';
    return send(res, 401, { error: value ? 'invalid_token' : 'unauthorized' },
      { 'www-authenticate': `Bearer realm="connkit-test"${err}` });
  }
  stats.api.ok += 1;
  const t = found.token;
  return send(res, 200, {
    sub: t.accountId,
    client_id: t.clientId,
    scope: t.scope,
    kind: found.kind,
    via,
    expires_in: t.exp ? t.exp - Math.floor(Date.now() / 1000) : undefined,
    query: rec.query,
  });
}

async function test(req, res, url) {
  const p = await params(req, url);
  switch (`${req.method} ${url.pathname}`) {
    case 'GET /test/callback':
      return send(res, 200, { callback: true, query: Object.fromEntries(url.searchParams) });
    case 'GET /test/stats':
      return send(res, 200, stats);
    case 'GET /test/config':
      return send(res, 200, config);
    case 'POST /test/config': {
      for (const [k, v] of Object.entries(p)) {
        if (!(k in DEFAULTS)) return send(res, 400, { error: `unknown setting ${k}` });
        if (k === 'rotate') config.rotate = v === true || v === 'true' || v === '1';
        else if (Number.isFinite(Number(v)) && Number(v) >= 0) config[k] = Number(v);
        else return send(res, 400, { error: `${k} must be a number` });
      }
      return send(res, 200, config);
    }
    case 'POST /test/reset':
      resetStats();
      Object.assign(config, DEFAULTS);
      nextInteraction = 'approve';
      return send(res, 200, { ok: true });
    case 'GET /test/token-requests':
      return send(res, 200, tokenLog);
    case 'GET /test/api-requests':
      return send(res, 200, apiLog);
    case 'POST /test/hash':
      return send(res, 200, { sha256: sha256(p.value ?? '') });
    case 'POST /test/invalidate': {
      // drops the given access token server-side: the next /api/me gets 401
      const found = await findToken(p.token);
      if (!found) return send(res, 404, { invalidated: false });
      await found.token.destroy();
      return send(res, 200, { invalidated: true, kind: found.kind });
    }
    case 'POST /test/interaction':
      if (p.mode !== 'approve' && p.mode !== 'deny') return send(res, 400, { error: 'mode must be approve or deny' });
      nextInteraction = p.mode;
      return send(res, 200, { ok: true, next: nextInteraction });
    case 'POST /test/device/approve':
    case 'POST /test/device/deny': {
      const [status, body] = await device(url.pathname.endsWith('deny') ? 'deny' : 'approve', p.user_code);
      return send(res, status, body);
    }
    case 'POST /test/introspect': {
      // introspection without client credentials, for specs: active or not
      const found = await findToken(p.token);
      if (found) return send(res, 200, { active: true, kind: found.kind, client_id: found.token.clientId });
      const rt = p.token ? await provider.RefreshToken.find(p.token) : undefined;
      if (rt && !rt.isExpired && !rt.consumed) return send(res, 200, { active: true, kind: 'refresh_token', client_id: rt.clientId });
      return send(res, 200, { active: false });
    }
    default:
      return send(res, 404, { error: 'no such test route' });
  }
}

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, ISSUER);
  try {
    if (url.pathname.startsWith('/test/')) return await test(req, res, url);
    if (url.pathname === '/api/me') return await api(req, res, url);
    if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(url.pathname)) return await interaction(req, res);
    for (const e of extensions) {
      if (e.route && await e.route(req, res, url)) return undefined;
    }
  } catch (err) {
    console.error(`test route ${url.pathname} failed: ${err.message}`);
    if (!res.headersSent) send(res, 500, { error: 'server_error', error_description: err.message });
    else res.end();
    return undefined;
  }
  return callback(req, res);
});
server.keepAliveTimeout = 5000;
server.listen(PORT, '127.0.0.1', () => {
  console.log(`oidc peer listening on ${ISSUER} (access ttl ${config.access_ttl}s)`);
});
const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
