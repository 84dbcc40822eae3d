-- Takes the shared store's lock of args.id and keeps it (the unlock
-- function is dropped): what a worker killed while holding it leaves
-- behind. Returns the worker's PID and the lock's time to live as the dict
-- reports it. args: id, dict, lock_ttl.
local connkit = require "connkit"

return function(args)
  local s = connkit.store.shared(args.dict or "tokens", { lock_ttl = tonumber(args.lock_ttl) })
  local unlock, err = s.lock(args.id, 0)
  if not unlock then error("lock: " .. err.code .. ": " .. err.message, 0) end
  local dict = ngx.shared[args.dict or "tokens"]
  return { pid = ngx.worker.pid(), ttl = dict:ttl("connkit/lock/" .. args.id) }
end
