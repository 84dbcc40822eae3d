-- Rate limits inside a worker (spec/rate_limit_spec.lua): args.base (the
-- scripted peer), args.tag, args.mode: "bucket" (4 requests one after
-- another, per_second 4, burst 1), "all" (the same 4 through connkit.all,
-- in light threads) or "pause" (a window of 1 per 2 s: the second request
-- waits for the reset). The waits must yield to nginx (ngx.sleep): the
-- spec pings the worker meanwhile.
local connkit = require "connkit"

return function(args)
  local integ = connkit.integration {
    name = "Ngx rate", key = "ngxrate" .. args.mode, auth = "none", base_url = args.base,
    rate_limit = { per_second = 4, burst = 1, max_wait = 5 },
  }
  local acct = integ:account { id = args.tag }
  ngx.update_time()
  local t0 = ngx.now()
  local statuses = {}
  if args.mode == "all" then
    local reqs = {}
    for i = 1, 4 do reqs[i] = acct:prepare { url = "/rl/ok", query = { tag = args.tag } } end
    for i, r in ipairs(connkit.all(reqs, { concurrency = 4 })) do statuses[i] = r.res and r.res.status or r.err.code end
  else
    local path, q = "/rl/ok", { tag = args.tag }
    if args.mode == "pause" then path, q = "/rl/window", { key = args.tag, limit = 1, window = 2 } end
    for i = 1, (args.mode == "pause" and 2 or 4) do
      local res, err = acct:get(path, { query = q })
      statuses[i] = res and res.status or err.code
    end
  end
  ngx.update_time()
  return { transport = connkit.transport(), statuses = statuses, elapsed = ngx.now() - t0 }
end
