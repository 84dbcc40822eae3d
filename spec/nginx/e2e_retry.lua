-- Retry rules inside a worker: scripted /flaky answers 503 args.fail times
-- for args.mark, then 200; the integration retries 503 after a short wait
-- (base 1 s with jitter: 0.5 to 1 s, then 1 to 2 s). The waits must yield to nginx: the spec
-- pings the worker meanwhile.
local connkit = require "connkit"

return function(args)
  local acct = connkit.integration {
    name = "E2E retry", key = "e2eretry", auth = "none", base_url = E2E.scripted,
    retry = { max = 3, statuses = { 503 }, base = 1, max_wait = 5 },
  }:account { id = args.mark }
  ngx.update_time()
  local t0 = ngx.now()
  local res, err = acct:get("/flaky", { query = { key = args.mark, fail = args.fail or 2 }, timeout = 10 })
  ngx.update_time()
  return {
    transport = connkit.transport(),
    status = res and res.status,
    json = res and res:json(),
    err = err and { code = err.code, message = tostring(err) },
    elapsed = ngx.now() - t0,
  }
end
