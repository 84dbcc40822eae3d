-- Fork safety: connkit was required and used (a real request, curl
-- transport) in init_by_lua, before nginx forked its workers. Here, in a
-- worker, a request over the curl transport (use_transport) and one over
-- the default transport; both must work (the curl engine is made again in
-- each process). args.mark tags the requests.
local connkit = require "connkit"

local function get(acct, path)
  local res, err = acct:get(path, { timeout = 10 })
  return { status = res and res.status, err = err and { code = err.code, message = tostring(err) } }
end

return function(args)
  local acct = connkit.integration {
    name = "E2E fork", key = "e2efork", auth = "none", base_url = E2E.scripted,
  }:account {}
  local pid = ngx.worker.pid()
  local out = { pid = pid, default = connkit.transport(), init = E2E.init_result }
  connkit.use_transport("curl")
  local ok, r = pcall(function()
    out.forced = connkit.transport()
    return get(acct, ("/status?code=200&mark=%s&via=curl&pid=%d"):format(args.mark, pid))
  end)
  connkit.use_transport("auto") -- for the worker's next scenarios
  if not ok then error(r, 0) end
  out.curl = r
  out.auto = get(acct, ("/status?code=200&mark=%s&via=auto&pid=%d"):format(args.mark, pid))
  return out
end
