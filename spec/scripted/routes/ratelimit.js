// Rate-limit headers (spec/rate_limit_spec.lua). Every request is recorded
// with its arrival time by server.js (/requests?path=P: `time`, epoch s).
//
//   /rl/window ?key=K&limit=N&window=S&is=seconds|epoch|http-date
//       a fixed window per key: the first request opens a window of S
//       seconds (default 2); up to N (default 2) requests in it get 200 with
//       x-ratelimit-remaining (N - count) and x-ratelimit-reset (the
//       window's end as seconds from now, epoch seconds, or an HTTP date);
//       a request beyond N inside the window gets 429 (remaining 0), and is
//       counted in /stats?key=rl-over:K.
//       Reply body: {"n": count in the window, "at": server time}.
//   /rl/ok    200 {"ok":true}, no rate-limit headers.
module.exports = (ctx) => {
  const windows = new Map(); // key -> { start, count }
  return {
    '/rl/window': (req, res, q) => {
      const key = q.key || 'default';
      const limit = Number(q.limit || 2);
      const span = Number(q.window || 2);
      const now = Date.now() / 1000;
      let w = windows.get(key);
      if (!w || now >= w.start + span) {
        w = { start: now, count: 0 };
        windows.set(key, w);
      }
      w.count += 1;
      const end = w.start + span;
      let reset;
      if (q.is === 'epoch') reset = String(Math.ceil(end));
      else if (q.is === 'http-date') reset = new Date(Math.ceil(end) * 1000).toUTCString();
      else reset = String(Math.ceil(end - now));
      const remaining = Math.max(0, limit - w.count);
      const headers = { 'x-ratelimit-remaining': String(remaining), 'x-ratelimit-reset': reset };
      if (w.count > limit) {
        ctx.count(`rl-over:${key}`);
        return ctx.send(res, 429, { error: 'over the limit', n: w.count, at: now }, headers);
      }
      return ctx.send(res, 200, { n: w.count, at: now }, headers);
    },
    '/rl/ok': (req, res) => ctx.send(res, 200, { ok: true }),
  };
};
