-- One GET of args.base/rl/ok (the scripted peer, tagged args.tag) through an
-- account whose rate limit (per_second 5, burst 1, scope integration) takes
-- its slots from connkit.store.shared (args.dict, default "tokens"): run
-- from several workers at once, the peer must see the requests spaced as
-- one bucket spaces them (spec/nginx_store_spec.lua). Returns the status
-- and the worker's PID.
local connkit = require "connkit"

local integ

return function(args)
  integ = integ or connkit.integration {
    name = "Shared rate", key = "sharedrate", auth = "none", base_url = "{base}",
    parameters = { "base" },
    rate_limit = { per_second = 5, burst = 1, max_wait = 10, scope = "integration" },
  }
  local acct = integ:account { id = "rate-" .. ngx.worker.pid(), parameters = { base = args.base },
    store = connkit.store.shared(args.dict or "tokens") }
  local res, err = acct:get("/rl/ok", { query = { tag = args.tag } })
  if not res then error(err.code .. ": " .. err.message, 0) end
  -- which workers served it (store_served reads it)
  ngx.shared[args.dict or "tokens"]:incr("served/" .. args.tag .. "/" .. ngx.worker.pid(), 1, 0)
  return { status = res.status, pid = ngx.worker.pid() }
end
