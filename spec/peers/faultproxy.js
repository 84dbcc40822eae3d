// A small TCP fault proxy for the fault specs, with Toxiproxy's vocabulary
// (plain node, no dependencies; runs on node 18 and 20).
//
//   node faultproxy.js <control-port>
//
// Everything listens on 127.0.0.1 only. The control port answers plain HTTP
// GETs with JSON:
//   /listen?upstream=PORT[&fault=F&arg=N&dir=D]  -> {"port": P}
//       a new listener on a free port that forwards to 127.0.0.1:PORT
//   /set?port=P&fault=F[&arg=N&dir=D]             -> {"ok": true}
//       changes the fault of listener P; it applies at once, to the
//       connections already open too (their byte counts start again)
//   /client?port=P&fault=F[&arg=N&data=S]         -> {"ok": true}
//       a misbehaving *client*: connects to 127.0.0.1:P (retrying for 5 s)
//       and sends S (a request) shaped by the fault
//   /stats?port=P                                 -> {"accepted": n, "open": n}
//
// Faults (dir: "down" = upstream to client, the default; "up"; "both"):
//   none                  forward as is
//   latency   arg=ms      each chunk is held ms milliseconds
//   bandwidth arg=bytes/s at most that rate
//   stall                 new connections are accepted and never answered
//                         (upstream is not even dialled); open ones forward
//                         nothing more in either direction
//   stall_headers         forward up to the end of the reply headers
//                         (CRLF CRLF), then nothing more
//   drip      arg=ms      one byte every ms milliseconds (default 1000)
//   reset     arg=bytes   forward that many bytes, then a TCP RST (SO_LINGER 0)
//   slice                 every byte in a write of its own
//   cut       arg=bytes   forward that many bytes, then close (FIN) both sides
//   slow_close arg=ms     when a side closes, the other side is closed ms later
'use strict';
const net = require('net');
const http = require('http');

const HOST = '127.0.0.1';
const listeners = new Map(); // port -> { upstream, fault, server, accepted, conns:Set }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const never = new Promise(() => {});

function parseFault(q) {
  const kind = q.get('fault') || 'none';
  const known = ['none', 'latency', 'bandwidth', 'stall', 'stall_headers', 'drip', 'reset',
    'slice', 'cut', 'slow_close'];
  if (!known.includes(kind)) throw new Error('unknown fault ' + kind);
  const dir = q.get('dir') || 'down';
  if (!['down', 'up', 'both'].includes(dir)) throw new Error('unknown dir ' + dir);
  const arg = q.has('arg') ? Number(q.get('arg')) : undefined;
  return { kind, arg, dir, gen: Date.now() + Math.random() };
}

function applies(fault, dir) {
  return fault.dir === 'both' || fault.dir === dir;
}

function rst(sock) {
  if (sock.destroyed) return;
  if (typeof sock.resetAndDestroy === 'function') sock.resetAndDestroy();
  else sock.destroy();
}

// Copies src to dst chunk by chunk, shaping each chunk by the listener's
// current fault. `conn` holds what both directions share.
async function pump(src, dst, lst, conn, dir) {
  const write = (buf) => new Promise((resolve) => {
    if (dst.destroyed) return resolve();
    if (dst.write(buf)) resolve(); else dst.once('drain', resolve);
  });
  const state = { gen: null, count: 0, headers: Buffer.alloc(0), passed: false };
  try {
    for await (const chunk of src) {
      let buf = chunk;
      while (buf.length > 0) {
        const f = lst.fault;
        if (state.gen !== f.gen) { state.gen = f.gen; state.count = 0; state.headers = Buffer.alloc(0); state.passed = false; }
        if (conn.dead) return;
        if (!applies(f, dir) && f.kind !== 'stall') { await write(buf); break; }
        switch (f.kind) {
          case 'none':
          case 'slow_close':
            await write(buf); buf = Buffer.alloc(0); break;
          case 'latency':
            await sleep(f.arg || 1000); await write(buf); buf = Buffer.alloc(0); break;
          case 'bandwidth': {
            const per = Math.max(1, Math.floor((f.arg || 1024) / 10));
            const part = buf.subarray(0, per);
            buf = buf.subarray(part.length);
            await write(part); await sleep(100); break;
          }
          case 'drip':
            await write(buf.subarray(0, 1)); buf = buf.subarray(1); await sleep(f.arg || 1000); break;
          case 'slice': { // one write (one segment: TCP_NODELAY) per byte
            for (let i = 0; i < buf.length; i++) await write(buf.subarray(i, i + 1));
            buf = Buffer.alloc(0); break;
          }
          case 'stall':
            await never; break;
          case 'stall_headers': {
            if (state.passed) { await never; break; }
            const seen = Buffer.concat([state.headers, buf]);
            const end = seen.indexOf('\r\n\r\n');
            if (end < 0) { state.headers = seen.subarray(-3); await write(buf); buf = Buffer.alloc(0); break; }
            const upto = end + 4 - (seen.length - buf.length);
            await write(buf.subarray(0, upto));
            state.passed = true; buf = Buffer.alloc(0); break;
          }
          case 'reset':
          case 'cut': {
            const left = (f.arg || 0) - (conn.counts.get(f.gen) || 0);
            const part = buf.subarray(0, Math.max(0, left));
            if (part.length) { await write(part); conn.counts.set(f.gen, (conn.counts.get(f.gen) || 0) + part.length); }
            buf = buf.subarray(part.length);
            if (buf.length > 0) {
              conn.dead = true;
              if (f.kind === 'reset') { rst(conn.client); rst(conn.upstream); }
              else { conn.client.end(); conn.upstream.end(); }
              return;
            }
            break;
          }
        }
      }
    }
  } catch (e) { /* a side went away: handled by close below */ }
  const f = lst.fault;
  if (f.kind === 'slow_close') await sleep(f.arg || 1000);
  if (!conn.dead) dst.end();
}

function listen(upstream, fault) {
  return new Promise((resolve, reject) => {
    const lst = { upstream, fault, accepted: 0, conns: new Set() };
    lst.server = net.createServer((client) => {
      lst.accepted++;
      client.on('error', () => {});
      if (lst.fault.kind === 'stall') { // accept and never answer
        lst.conns.add(client);
        client.on('close', () => lst.conns.delete(client));
        client.pause();
        return;
      }
      const up = net.connect(upstream, HOST);
      up.on('error', () => rst(client));
      client.setNoDelay(true); up.setNoDelay(true);
      const conn = { client, upstream: up, counts: new Map(), dead: false };
      lst.conns.add(client);
      client.on('close', () => { lst.conns.delete(client); up.destroy(); });
      up.on('close', () => { if (conn.dead) client.destroy(); });
      pump(client, up, lst, conn, 'up');
      pump(up, client, lst, conn, 'down');
    });
    lst.server.on('error', reject);
    lst.server.listen(0, HOST, () => {
      const port = lst.server.address().port;
      listeners.set(port, lst);
      resolve(port);
    });
  });
}

// A client that connects to port and sends `data` shaped by the fault.
async function badClient(port, fault, data) {
  const buf = Buffer.from(data);
  let sock;
  for (let i = 0; i < 100 && !sock; i++) {
    sock = await new Promise((resolve) => {
      const s = net.connect(port, HOST);
      s.once('connect', () => resolve(s));
      s.once('error', () => resolve(null));
    });
    if (!sock) await sleep(50);
  }
  if (!sock) return;
  sock.on('error', () => {});
  sock.on('data', () => {});
  sock.setNoDelay(true);
  const half = buf.subarray(0, fault.arg !== undefined ? fault.arg : Math.floor(buf.length / 2));
  switch (fault.kind) {
    case 'stall': break; // connected, sends nothing, never closes
    case 'stall_headers': sock.write(half); break; // part of the request, then nothing
    case 'drip':
      for (let i = 0; i < buf.length && !sock.destroyed; i++) {
        sock.write(buf.subarray(i, i + 1)); await sleep(fault.arg || 1000);
      }
      break;
    case 'bandwidth': {
      const per = Math.max(1, Math.floor((fault.arg || 1024) / 10));
      for (let i = 0; i < buf.length && !sock.destroyed; i += per) {
        sock.write(buf.subarray(i, i + per)); await sleep(100);
      }
      break;
    }
    case 'slice':
      for (let i = 0; i < buf.length && !sock.destroyed; i++) {
        sock.write(buf.subarray(i, i + 1)); await new Promise((r) => setImmediate(r));
      }
      break;
    case 'cut': sock.end(half); break;
    case 'reset': sock.write(half, () => setTimeout(() => rst(sock), 50)); break;
    case 'slow_close': sock.write(buf); await sleep(fault.arg || 1000); sock.end(); break;
    case 'latency': await sleep(fault.arg || 1000); sock.write(buf); break;
    default: sock.write(buf);
  }
}

function reply(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

const control = http.createServer(async (req, res) => {
  const u = new URL(req.url, 'http://' + HOST);
  const q = u.searchParams;
  try {
    if (u.pathname === '/listen') {
      const upstream = Number(q.get('upstream'));
      if (!(upstream > 0)) throw new Error('upstream must be a port');
      return reply(res, 200, { port: await listen(upstream, parseFault(q)) });
    }
    const port = Number(q.get('port'));
    if (u.pathname === '/client') {
      badClient(port, parseFault(q), q.get('data') || '');
      return reply(res, 200, { ok: true });
    }
    const lst = listeners.get(port);
    if (!lst) throw new Error('no listener on port ' + q.get('port'));
    if (u.pathname === '/set') {
      lst.fault = parseFault(q);
      return reply(res, 200, { ok: true });
    }
    if (u.pathname === '/stats') return reply(res, 200, { accepted: lst.accepted, open: lst.conns.size });
    reply(res, 404, { error: 'no such control route' });
  } catch (e) {
    reply(res, 400, { error: String(e.message || e) });
  }
});
control.keepAliveTimeout = 1000;
control.listen(Number(process.argv[2]), HOST);
