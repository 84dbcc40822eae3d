-- req:start() and handle:result() inside a worker: start returns at once
-- (the request runs in a light thread), done() is false until the 1 s reply
-- is in, result() waits for it, yielding to nginx.
local connkit = require "connkit"

return function(args)
  local acct = connkit.integration {
    name = "E2E start", key = "e2estart", auth = "api_token", base_url = E2E.scripted,
    auth_token = { type = "header", name = "X-Api-Key", value = "{token}" },
  }:account { id = args.mark, credentials = { token = "tok-" .. args.mark } }
  ngx.update_time()
  local t0 = ngx.now()
  local handle = acct:prepare { url = "/delay", query = { s = 1, mark = args.mark }, timeout = 10 }:start()
  ngx.update_time()
  local started = ngx.now() - t0
  local done_at_once = handle:done()
  local res, err = handle:result()
  ngx.update_time()
  return {
    transport = connkit.transport(),
    start_took = started,
    done_at_once = done_at_once,
    done_after = handle:done(),
    status = res and res.status,
    err = err and { code = err.code, message = tostring(err) },
    elapsed = ngx.now() - t0,
  }
end
