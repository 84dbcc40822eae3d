-- One account:get to args.base .. args.path (a 1 s upstream in
-- openresty_spec), timed inside the worker.
local connkit = require "connkit"

return function(args)
  local acct = connkit.integration {
    name = "Slow upstream", key = "slow", auth = "none", base_url = args.base,
  }:account {}
  ngx.update_time()
  local t0 = ngx.now()
  local res, err = acct:get(args.path or "/slow", { timeout = tonumber(args.timeout) or 10 })
  ngx.update_time()
  return {
    status = res and res.status,
    body = res and res.body,
    err = err and { code = err.code, message = tostring(err) },
    elapsed = ngx.now() - t0,
    transport = connkit.transport and connkit.transport() or "curl",
  }
end
