-- Transfers started in light threads: args.n of them to args.url (a slow
-- location) at once; how long they took together, what poll and pending
-- said, their replies. args.cancel: the second one is cancelled at once.
return function(args)
  local t = require "connkit.transport.ngx"
  local n = tonumber(args.n or 3)
  ngx.update_time()
  local t0 = ngx.now()
  local xs = {}
  for i = 1, n do xs[i] = t.start({ method = "GET", url = args.url, timeout = 5 }) end
  local out = { pending_at_start = t.pending(), done_at_start = xs[1]:done() }
  if args.cancel then xs[2]:cancel() end
  out.first_poll = t.poll(0) -- the cancelled one, if any
  local finished = 0
  while t.pending() > 0 do finished = finished + t.poll(5) end
  out.finished = finished
  ngx.update_time()
  out.elapsed = ngx.now() - t0
  out.results = {}
  for i = 1, n do
    local res, code = xs[i]:result()
    out.results[i] = res and (res.status .. " " .. res.body) or code
  end
  out.pending_at_end, out.done_at_end = t.pending(), xs[1]:done()
  return out
end
