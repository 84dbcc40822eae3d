// connkit test peer: a scripted HTTP server on 127.0.0.1 that misbehaves on
// purpose, for what a real authorization server will not do. One process,
// behaviour chosen by the path. Every request is recorded (method, path,
// query, headers, body) and readable at GET /last?path=... and /requests.
//
//   node spec/scripted/server.js PORT [HANG_PORT]
//
// HANG_PORT (optional): a second listener that accepts connections and never
// reads or answers (for connect-ok-but-silent timeouts).
// The routes are listed in ROUTES below and in spec/peers/scripted.lua.
'use strict';

const http = require('node:http');
const net = require('node:net');

const PORT = Number(process.argv[2] || process.env.PORT);
const HANG_PORT = Number(process.argv[3] || process.env.HANG_PORT || 0);
if (!Number.isInteger(PORT) || PORT <= 0) {
  console.error('usage: server.js PORT [HANG_PORT]');
  process.exit(2);
}

// Credentials the custom-token login accepts (awkward on purpose).
const LOGIN_USER = 'alice';
const LOGIN_PASSWORD = 'pa ss&w=rd%+/?';

let seq = 0;               // token counter: every issued token is distinct
let log = [];              // every request, oldest first
let attempts = {};         // key -> number of requests seen
let tokens = new Map();    // token issued here -> { exp, valid }
let staleFirst = {};       // key -> first token seen (refused for ever)
const hung = new Set();    // sockets left hanging, destroyed on exit

function newToken(prefix, ttl) {
  seq += 1;
  const value = `${prefix}-${seq}-${Math.random().toString(36).slice(2, 10)}`;
  tokens.set(value, { exp: ttl ? Date.now() / 1000 + Number(ttl) : undefined, valid: true });
  return value;
}

function send(res, status, body, headers = {}) {
  const data = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain' : 'application/json',
    'content-length': Buffer.byteLength(data),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(data);
}

function parseForm(raw) {
  return Object.fromEntries(new URLSearchParams(raw));
}

function bearer(req, query) {
  const m = /^bearer\s+(.+)$/i.exec(req.headers.authorization || '');
  return m ? m[1].trim() : query.access_token;
}

function count(key) {
  attempts[key] = (attempts[key] || 0) + 1;
  return attempts[key];
}

// A good token reply shaped by query options on the token URL:
//   ttl=N (expires_in, default 3600; ttl=none omits it), rt=0 (no refresh_token),
//   type=... (token_type, default "Bearer"), scope=...
function tokenReply(q, prefix = 'tok') {
  const ttl = q.ttl === 'none' ? undefined : Number(q.ttl || 3600);
  const out = { access_token: newToken(prefix, ttl), token_type: q.type || 'Bearer' };
  if (ttl !== undefined) out.expires_in = ttl;
  if (q.rt !== '0') out.refresh_token = newToken('rt', undefined);
  if (q.scope) out.scope = q.scope;
  return out;
}

const ROUTES = {
  // --- token endpoints ---------------------------------------------------
  '/token/ok': (req, res, q) => send(res, 200, tokenReply(q)),
  '/token/html503': (req, res) => send(res, 503,
    '<html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1></body></html>',
    { 'content-type': 'text/html; charset=utf-8' }),
  '/token/string-expires': (req, res, q) => {
    const r = tokenReply({ ...q, ttl: q.ttl || 3600 });
    r.expires_in = String(r.expires_in);
    send(res, 200, r);
  },
  '/token/expires-raw': (req, res, q) => {
    // expires_in exactly as given: v=abc (a string) or json=<any JSON value>
    const r = tokenReply({ ...q, ttl: 3600 });
    r.expires_in = q.json !== undefined ? JSON.parse(q.json) : q.v;
    send(res, 200, r);
  },
  '/token/no-expires': (req, res, q) => send(res, 200, tokenReply({ ...q, ttl: 'none' })),
  '/token/expires-at': (req, res, q) => {
    const ttl = Number(q.ttl || 3600);
    const r = tokenReply({ ...q, ttl });
    delete r.expires_in;
    r.expires_at = Math.floor(Date.now() / 1000) + ttl;
    send(res, 200, r);
  },
  '/token/error200': (req, res) => send(res, 200,
    { error: 'invalid_grant', error_description: 'the grant is no longer valid (scripted)' }),
  '/token/invalid-grant': (req, res) => send(res, 400,
    { error: 'invalid_grant', error_description: 'refresh token revoked (scripted)' }),
  '/token/form': (req, res, q) => {
    const r = tokenReply(q);
    send(res, 200, new URLSearchParams(Object.entries(r).map(([k, v]) => [k, String(v)])).toString(),
      { 'content-type': 'application/x-www-form-urlencoded' });
  },
  '/token/empty': (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': 0 });
    res.end();
  },
  '/token/reset': (req, res) => {
    // status line, headers and part of the body, then a TCP reset
    const sock = res.socket;
    sock.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"access_token":"tok-cut');
    setTimeout(() => (sock.resetAndDestroy ? sock.resetAndDestroy() : sock.destroy()), 20);
  },
  '/token/slow': (req, res, q) => {
    setTimeout(() => { if (!res.destroyed) send(res, 200, tokenReply(q)); },
      Number(q.delay || 2) * 1000);
  },
  '/token/flaky': (req, res, q) => {
    // fails with 503 `fail` times (default 2) per key, then a good token
    const key = `token:${q.key || 'default'}`;
    if (count(key) <= Number(q.fail || 2)) return send(res, 503, { error: 'temporarily_unavailable' });
    return send(res, 200, tokenReply(q));
  },

  // --- custom token login ------------------------------------------------
  '/login': (req, res, q, body) => {
    const p = { ...q, ...body };
    if (p.user !== LOGIN_USER || p.password !== LOGIN_PASSWORD) {
      return send(res, 401, { error: 'bad credentials' });
    }
    return send(res, 200, { data: { token: newToken('ct', q.ttl || 600), ttl: String(q.ttl || 600) } });
  },

  // --- resources ---------------------------------------------------------
  '/resource': (req, res, q) => {
    // 200 for a token issued here that is valid and not expired, else 401
    const t = tokens.get(bearer(req, q));
    if (!t || !t.valid || (t.exp !== undefined && t.exp <= Date.now() / 1000)) {
      return send(res, 401, { error: 'invalid_token' },
        { 'www-authenticate': 'Bearer realm="scripted", error="invalid_token"' });
    }
    return send(res, 200, { ok: true });
  },
  '/resource/stale-first': (req, res, q) => {
    // the first token seen for `key` is refused for ever; any other gets 200
    const key = q.key || 'default';
    const tok = bearer(req, q);
    if (!(key in staleFirst)) staleFirst[key] = tok;
    if (!tok || tok === staleFirst[key]) {
      return send(res, 401, { error: 'invalid_token' },
        { 'www-authenticate': 'Bearer realm="scripted", error="invalid_token"' });
    }
    return send(res, 200, { ok: true });
  },
  '/status': (req, res, q) => send(res, Number(q.code || 200), { status: Number(q.code || 200) }),
  '/flaky': (req, res, q) => {
    // fails `fail` times (default 2) per key with `status` (default 503)
    const n = count(q.key || 'default');
    if (n <= Number(q.fail || 2)) return send(res, Number(q.status || 503), { attempt: n, error: 'unavailable' });
    return send(res, 200, { attempt: n, ok: true });
  },
  '/ratelimit': (req, res, q) => {
    // 429 with Retry-After `fail` times (default 1) per key, then 200;
    // retry_after=N seconds (default 1); date=1 sends it as an HTTP date
    const n = count(q.key || 'default');
    if (n <= Number(q.fail || 1)) {
      const secs = Number(q.retry_after || 1);
      const ra = q.date === '1' ? new Date(Date.now() + secs * 1000).toUTCString() : String(secs);
      return send(res, 429, { attempt: n, error: 'rate_limited' }, { 'retry-after': ra });
    }
    return send(res, 200, { attempt: n, ok: true });
  },
  '/delay': (req, res, q) => {
    setTimeout(() => { if (!res.destroyed) send(res, 200, { delayed: Number(q.s || 1) }); },
      Number(q.s || 1) * 1000);
  },
  '/hang': (req, res) => { hung.add(res.socket); }, // headers never come
  // n slow redirect hops (s seconds each), then 200: a request's timeout covers them all
  '/redirect/slow': (req, res, q) => {
    const n = Number(q.n || 3);
    setTimeout(() => {
      if (res.destroyed) return;
      if (n <= 0) return send(res, 200, { hops_done: true });
      send(res, 302, '', { location: `/redirect/slow?n=${n - 1}&s=${q.s || 1}&key=${q.key || ''}` });
    }, Number(q.s || 1) * 1000);
  },

  // --- issue 10: token validation, scrubbing, protocol codes --------------
  '/token/crlf-first': (req, res, q) => {
    // the first reply per key carries an access token with CR/LF in it
    // (a header injection if it were sent), every later one a good token
    if (count(`crlf:${q.key || 'default'}`) === 1) {
      return send(res, 200, { access_token: 'tok-bad\r\nX-Injected: 1', token_type: 'Bearer', expires_in: 3600 });
    }
    return send(res, 200, tokenReply(q));
  },
  '/token/echo': (req, res, q, body) => {
    // echoes the request field `field` (form or JSON body, else the query)
    // after `at` padding characters: mode=desc in a 400 error_description,
    // mode=body as a 503 text/plain body
    const v = String(body[q.field] ?? q[q.field] ?? '');
    const text = `${'x'.repeat(Number(q.at || 0))}${v} (echoed)`;
    if (q.mode === 'body') return send(res, 503, text);
    return send(res, 400, { error: 'invalid_client', error_description: text });
  },
  '/raw/huge-header': (req, res) => {
    // a 200 KB header line (curl's limit is 100 KB)
    const sock = res.socket;
    sock.end(`HTTP/1.1 200 OK\r\nX-Huge: ${'h'.repeat(200 * 1024)}\r\nContent-Length: 2\r\n\r\nok`);
  },
  '/raw/bad-status': (req, res) => {
    // a status line that is not HTTP ("2OO" with letters O)
    res.socket.end('HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok');
  },
  // status lines as servers write them (spec/status_line_spec.lua)
  '/raw/http10': (req, res) => {
    res.socket.end('HTTP/1.0 203 Non-Authoritative Information\r\nContent-Length: 2\r\n\r\nok');
  },
  '/raw/early-hints': (req, res) => {
    // an interim reply, then the final one: the final one's status and headers
    res.socket.end('HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n'
      + 'HTTP/1.1 201 Created\r\nX-Final: yes\r\nContent-Length: 2\r\n\r\nok');
  },
  '/raw/no-reason': (req, res) => {
    res.socket.end('HTTP/1.1 299\r\nContent-Length: 2\r\n\r\nok');
  },
  '/raw/lf-only': (req, res) => {
    res.socket.end('HTTP/1.1 202 Accepted\nX-Lf: 1\nContent-Length: 2\n\nok');
  },

  // --- control -----------------------------------------------------------
  '/last': (req, res, q) => {
    const want = q.path;
    for (let i = log.length - 1; i >= 0; i -= 1) {
      if (!want || log[i].path === want) return send(res, 200, log[i]);
    }
    return send(res, 404, { error: 'nothing recorded for that path' });
  },
  '/requests': (req, res, q) => send(res, 200, q.path ? log.filter((r) => r.path === q.path) : log),
  '/stats': (req, res, q) => send(res, 200, q.key ? { key: q.key, attempts: attempts[q.key] || 0 } : { attempts, requests: log.length }),
  '/invalidate-all': (req, res) => {
    for (const t of tokens.values()) t.valid = false;
    send(res, 200, { ok: true });
  },
  '/reset': (req, res) => {
    log = []; attempts = {}; tokens = new Map(); staleFirst = {};
    send(res, 200, { ok: true });
  },
};
// More routes, one file per feature: spec/scripted/routes/*.js each export
// `(ctx) => ({ '/path': (req, res, q, body, raw) => ... })`. A route may not
// replace one defined above.
const ctx = {
  send, newToken, tokenReply, count, bearer, parseForm,
  port: PORT,
  token: (value) => tokens.get(value),  // { exp, valid } of a token issued here
};
const routesDir = require('node:path').join(__dirname, 'routes');
const fs = require('node:fs');
if (fs.existsSync(routesDir)) {
  for (const file of fs.readdirSync(routesDir).filter((f) => f.endsWith('.js')).sort()) {
    for (const [path, fn] of Object.entries(require(`${routesDir}/${file}`)(ctx))) {
      if (ROUTES[path]) throw new Error(`${file}: route ${path} is defined twice`);
      ROUTES[path] = fn;
    }
  }
}

const CONTROL = new Set(['/last', '/requests', '/stats', '/reset', '/invalidate-all']);

const server = http.createServer((req, res) => {
  const url = new URL(req.url, `http://127.0.0.1:${PORT}`);
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks).toString();
    const q = Object.fromEntries(url.searchParams);
    const cty = req.headers['content-type'] || '';
    let body = {};
    if (cty.startsWith('application/x-www-form-urlencoded')) body = parseForm(raw);
    else if (cty.includes('json')) { try { body = JSON.parse(raw); } catch { body = {}; } }
    const route = ROUTES[url.pathname];
    if (!CONTROL.has(url.pathname)) {
      log.push({
        n: log.length + 1,
        time: Date.now() / 1000,
        method: req.method,
        path: url.pathname,
        query: q,
        headers: req.headers,
        body: raw,
        form: cty.startsWith('application/x-www-form-urlencoded') ? body : undefined,
        json: cty.includes('json') && raw ? body : undefined,
      });
      if (log.length > 5000) log.shift();
    }
    if (!route) return send(res, 404, { error: 'no such scripted path', path: url.pathname });
    try {
      return route(req, res, q, body, Buffer.concat(chunks));
    } catch (err) {
      console.error(`${url.pathname}: ${err.message}`);
      return send(res, 500, { error: 'scripted server bug' });
    }
  });
});
server.keepAliveTimeout = 5000;
server.listen(PORT, '127.0.0.1', () => console.log(`scripted peer on 127.0.0.1:${PORT}`));

if (HANG_PORT) {
  // accepts and never reads nor answers
  const hang = net.createServer((sock) => { hung.add(sock); sock.pause(); });
  hang.listen(HANG_PORT, '127.0.0.1', () => console.log(`hang listener on 127.0.0.1:${HANG_PORT}`));
}

const stop = () => {
  for (const s of hung) s.destroy();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
