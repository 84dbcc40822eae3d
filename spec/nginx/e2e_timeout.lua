-- A stalled upstream inside a worker: the scripted peer's hang listener
-- accepts and never answers; the request's timeout (args.timeout s) ends it
-- with code "timeout".
local connkit = require "connkit"

return function(args)
  local acct = connkit.integration {
    name = "E2E timeout", key = "e2etimeout", auth = "none", base_url = E2E.hang,
  }:account {}
  ngx.update_time()
  local t0 = ngx.now()
  local res, err = acct:get("/stalled", { timeout = tonumber(args.timeout) })
  ngx.update_time()
  return {
    transport = connkit.transport(),
    status = res and res.status,
    err = err and { code = err.code, message = tostring(err) },
    elapsed = ngx.now() - t0,
  }
end
