-- GET args.base/resource (the scripted peer) through a client-credentials
-- account on connkit.store.shared (spec/nginx/_store_account.lua). One
-- account object per worker and args.name, kept across requests as a host
-- keeps its accounts; every worker's account uses the same dict and id.
-- Raises (status 500) unless the call answers 200.
-- args: base, name, id, dict (default "tokens"), key, lock_ttl,
--   lock_timeout, run (tags the token URL, so the spec counts its own
--   token requests), lock_sleep (seconds the account's store sleeps once it
--   holds the lock the first time: the token fetch then yields to nginx),
--   timeout.
local accounts = require "nginx._store_account"

return function(args)
  local acct = accounts.account(args)
  local res, err = acct:get("/resource", { timeout = accounts.number(args.timeout) or 20 })
  if not res or res.status ~= 200 then
    error(("the call failed: %s"):format(err and (err.code .. ": " .. err.message) or res.status), 0)
  end
  -- which workers served args.name (store_served reads it)
  ngx.shared[args.dict or "tokens"]:incr("served/" .. args.name .. "/" .. ngx.worker.pid(), 1, 0)
  return { status = res.status, pid = ngx.worker.pid() }
end
