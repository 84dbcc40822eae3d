-- connkit.store.shared's rate_take called directly with one `at`: returns
-- the waits of four takes (per_second 2, burst 1; the third with a limit
-- below its wait), and the error of a bad scope key.
local connkit = require "connkit"

return function(args)
  local store = connkit.store.shared(args.dict or "tokens")
  local at = ngx.now()
  local key = "ratelimit:take:" .. args.tag
  local waits = {
    store.rate_take(key, 2, 1, at, 5),
    store.rate_take(key, 2, 1, at, 5),
    store:rate_take(key, 2, 1, at, 0.1), -- beyond the limit: nothing reserved
    store.rate_take(key, 2, 1, at, 5),
  }
  local ok, err = pcall(store.rate_take, "", 2, 1, at, 5)
  return { waits = waits, raised = not ok and tostring(err) or false }
end
