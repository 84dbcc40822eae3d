// Routes for files in and out (spec/files_spec.lua, spec/nginx_files_spec.lua):
//
//   /files/bytes?n=N [status=200, cut=M, gzip=1, chunked=1]
//       N bytes of a fixed pseudo-random pattern (byte i is pattern(i)),
//       streamed with backpressure (the body is never held whole). cut=M:
//       the Content-Length says N, the connection is destroyed after M bytes
//       (with key=K: only on the first request of key K).
//       gzip=1: the body gzip-encoded (Content-Encoding: gzip, chunked).
//       chunked=1: no Content-Length. The sha256 of the N bytes is in the
//       X-Sha256 header (computed up front, cached per N).
//   /files/upload
//       the raw request body as received, byte for byte: { length, sha256,
//       content_type, boundary, parts: [ { name, filename, type, length,
//       sha256, value (when under 4 KiB) } ] } (parts parsed here from the
//       raw bytes by the boundary of the Content-Type header)
'use strict';

const crypto = require('node:crypto');
const zlib = require('node:zlib');

// The pattern: a block of deterministic bytes, repeated. Its size is prime,
// so no two 64 KiB pieces of a body are equal (LuaJIT interns strings: equal
// pieces would share their memory and hide a body held whole).
const BLOCK = 65521;
const block = (() => {
  const b = Buffer.alloc(BLOCK);
  let x = 0x12345678;
  for (let i = 0; i < BLOCK; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
})();

// sha256 of the first n bytes of the pattern, cached per n.
const shaCache = new Map();
function patternSha(n) {
  if (shaCache.has(n)) return shaCache.get(n);
  const h = crypto.createHash('sha256');
  let left = n;
  while (left > 0) {
    const k = Math.min(left, BLOCK);
    h.update(k === BLOCK ? block : block.subarray(0, k));
    left -= k;
  }
  const d = h.digest('hex');
  shaCache.set(n, d);
  return d;
}

// Writes n bytes of the pattern to `out` (a stream), honouring backpressure;
// stops after `cut` bytes with cb(true).
function pump(out, n, cut, cb) {
  let sent = 0;
  const limit = cut >= 0 ? Math.min(cut, n) : n;
  function more() {
    while (sent < limit) {
      const k = Math.min(BLOCK, limit - sent);
      sent += k;
      if (!out.write(k === BLOCK ? block : block.subarray(0, k))) {
        out.once('drain', more);
        return;
      }
    }
    cb(cut >= 0 && cut < n);
  }
  more();
}

function parseParts(raw, boundary) {
  const parts = [];
  if (!boundary) return parts;
  const delim = Buffer.from(`--${boundary}`);
  let pos = raw.indexOf(delim);
  while (pos >= 0) {
    let start = pos + delim.length;
    if (raw.subarray(start, start + 2).toString() === '--') break; // the closing delimiter
    start += 2; // CRLF
    const headEnd = raw.indexOf('\r\n\r\n', start);
    if (headEnd < 0) break;
    const head = raw.subarray(start, headEnd).toString('latin1');
    const next = raw.indexOf(Buffer.concat([Buffer.from('\r\n'), delim]), headEnd + 4);
    if (next < 0) break;
    const data = raw.subarray(headEnd + 4, next);
    const part = { headers: head.split('\r\n'), length: data.length,
      sha256: crypto.createHash('sha256').update(data).digest('hex') };
    const cd = /content-disposition:\s*form-data;\s*name="([^"]*)"(?:;\s*filename="([^"]*)")?/i.exec(head);
    if (cd) { part.name = cd[1]; if (cd[2] !== undefined) part.filename = cd[2]; }
    const ct = /content-type:\s*([^\r\n]*)/i.exec(head);
    if (ct) part.type = ct[1];
    if (data.length < 4096) part.value = data.toString('utf8');
    parts.push(part);
    pos = next + 2;
  }
  return parts;
}

module.exports = (ctx) => ({
  '/files/bytes': (req, res, q) => {
    const n = Number(q.n || 0);
    let cut = q.cut !== undefined ? Number(q.cut) : -1;
    if (q.key && ctx.count(`files-bytes:${q.key}`) > 1) cut = -1;
    const status = Number(q.status || 200);
    const headers = { 'content-type': 'application/octet-stream', 'x-sha256': patternSha(n) };
    if (q.gzip === '1') {
      headers['content-encoding'] = 'gzip';
      res.writeHead(status, headers);
      const gz = zlib.createGzip();
      gz.pipe(res);
      pump(gz, n, -1, () => gz.end());
      return;
    }
    if (q.chunked !== '1') headers['content-length'] = n;
    res.writeHead(status, headers);
    pump(res, n, cut, (wasCut) => {
      if (wasCut) setTimeout(() => req.socket.destroy(), 50);
      else res.end();
    });
  },
  '/files/upload': (req, res, q, body, raw) => {
    const cty = req.headers['content-type'] || '';
    const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(cty);
    const boundary = m ? (m[1] || m[2]) : null;
    ctx.send(res, 200, {
      length: raw.length,
      sha256: crypto.createHash('sha256').update(raw).digest('hex'),
      content_type: cty,
      content_length: req.headers['content-length'] || null,
      transfer_encoding: req.headers['transfer-encoding'] || null,
      boundary,
      parts: parseParts(raw, boundary),
      // the body with the boundary replaced by "BOUNDARY", for comparing two
      // transports' bodies byte for byte
      normalized_sha256: boundary
        ? crypto.createHash('sha256').update(Buffer.from(raw.toString('latin1').split(boundary).join('BOUNDARY'), 'latin1')).digest('hex')
        : null,
    });
  },
});
