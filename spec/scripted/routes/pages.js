// Paginated APIs for spec/pagination_spec.lua (issue 13, point 1). The
// data set is n items (default 25) { id: 1..n }; every route carries its
// other query parameters (mark=..., n=...) into the next-page URLs it
// builds, and takes:
//   delay=S      answer after S seconds (pages fetched side by side)
//   fail_at=K    page K answers fail_status (default 500) with a JSON error
//
//   /pages/cursor [cursor=, limit=|size=10, loop_at=K]   (cursor and limit
//       also read from a JSON body) -> { data: [...], meta: { next_cursor } },
//       next_cursor null on the last page; loop_at=K: page K names its own
//       cursor again (a stuck server)
//   /pages/next [after=0, size=10, form=abs|path|query|dot, other=URL, other_at=2, loop_at=K]
//       -> { items: [...], links: { next } }: form says how the next URL is
//       written (absolute, /path?q, ?q, path?q relative to /pages/); at page
//       other_at the next URL is `other` (another origin); loop_at=K: page
//       K's next URL is the first page's again
//   /pages/link [page=1, size=10, form=abs|path|query, other=URL, other_at=2]
//       -> a bare JSON array, the next page in `Link: <...>; rel="next"`
//   /pages/offset [offset=0, limit=10] -> { results: [...], total: n }
//   /pages/page [page=1, per_page=10, shape=array] -> { data: [...],
//       meta: { total, total_pages } }, or the bare array with shape=array
'use strict';

module.exports = (ctx) => {
  const { send } = ctx;
  const count = (q) => Number(q.n ?? 25);
  const slice = (from, size, n) => {
    const out = [];
    for (let i = from; i < Math.min(from + size, n); i += 1) out.push({ id: i + 1 });
    return out;
  };
  // q without `drop`, plus `extra`, as a query string
  const carry = (q, drop, extra) => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (!drop.includes(k)) p.set(k, v);
    for (const [k, v] of Object.entries(extra)) p.set(k, String(v));
    return p.toString();
  };
  const later = (q, fn) => {
    const s = Number(q.delay || 0);
    if (s > 0) setTimeout(fn, s * 1000); else fn();
  };
  const failed = (q, page, res) => {
    if (q.fail_at && Number(q.fail_at) === page) {
      send(res, Number(q.fail_status || 500), { error: 'page failed (scripted)', page });
      return true;
    }
    return false;
  };
  const base = `http://127.0.0.1:${ctx.port}`;
  // a next-page URL written as form says
  const written = (form, path, qs) => {
    if (form === 'path') return `${path}?${qs}`;
    if (form === 'query') return `?${qs}`;
    if (form === 'dot') return `${path.replace(/^.*\//, '')}?${qs}`;
    return `${base}${path}?${qs}`;
  };

  return {
    '/pages/cursor': (req, res, q, body) => later(q, () => {
      const n = count(q);
      const size = Number(q.limit ?? body.limit ?? q.size ?? 10);
      const cursor = q.cursor ?? body.cursor;
      const from = cursor ? Number(String(cursor).slice(1)) : 0;
      const page = Math.floor(from / size) + 1;
      if (failed(q, page, res)) return;
      let next = from + size < n ? `c${from + size}` : null;
      if (q.loop_at && Number(q.loop_at) === page) next = cursor;
      send(res, 200, { data: slice(from, size, n), meta: { next_cursor: next } });
    }),
    '/pages/next': (req, res, q) => later(q, () => {
      const n = count(q);
      const size = Number(q.limit ?? q.size ?? 10);
      const from = Number(q.after || 0);
      const page = Math.floor(from / size) + 1;
      if (failed(q, page, res)) return;
      let next = null;
      if (q.other && Number(q.other_at || 2) === page) next = q.other;
      else if (q.loop_at && Number(q.loop_at) === page) next = written(q.form, '/pages/next', carry(q, ['after'], {}));
      else if (from + size < n) next = written(q.form, '/pages/next', carry(q, ['after'], { after: from + size }));
      send(res, 200, { items: slice(from, size, n), links: { next } });
    }),
    '/pages/link': (req, res, q) => later(q, () => {
      const n = count(q);
      const size = Number(q.size || 10);
      const page = Number(q.page || 1);
      if (failed(q, page, res)) return;
      const from = (page - 1) * size;
      const parts = [`<${written(q.form, '/pages/link', carry(q, ['page'], { page: 1 }))}>; rel="first"`];
      if (q.other && Number(q.other_at || 2) === page) parts.push(`<${q.other}>; rel="next"`);
      else if (from + size < n) {
        parts.push(`<${written(q.form, '/pages/link', carry(q, ['page'], { page: page + 1 }))}>; title="a, b"; rel="next"`);
      }
      send(res, 200, slice(from, size, n), { link: parts.join(', ') });
    }),
    '/pages/offset': (req, res, q) => later(q, () => {
      const n = count(q);
      const size = Number(q.limit || 10);
      const from = Number(q.offset || 0);
      if (failed(q, Math.floor(from / size) + 1, res)) return;
      send(res, 200, { results: slice(from, size, n), total: n });
    }),
    '/pages/page': (req, res, q) => later(q, () => {
      const n = count(q);
      const size = Number(q.per_page || 10);
      const page = Number(q.page || 1);
      if (failed(q, page, res)) return;
      const items = slice((page - 1) * size, size, n);
      if (q.shape === 'array') return send(res, 200, items);
      return send(res, 200, { data: items, meta: { total: n, total_pages: Math.ceil(n / size) } });
    }),
  };
};
