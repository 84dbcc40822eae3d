-- Callers inside a renewal stay re-entrant inside nginx: while the token
-- fetch yields (the store sleeps in its lock), the store's put (run by the
-- renewal, before the new token is in use) calls the account and gets
-- today's immediate "refresh" error instead of waiting for itself; the
-- on_token hook (after it) calls the account and gets through. The main
-- call succeeds. args: base, name.
local connkit = require "connkit"
local accounts = require "nginx._store_account"

local function clock()
  ngx.update_time()
  return ngx.now()
end

local function outcome(res, err, t0)
  return { status = res and res.status, code = err and err.code, message = err and err.message,
    took = clock() - t0 }
end

return function(args)
  local seen = {}
  local acct
  local s = connkit.store.shared("tokens")
  local store = {
    get = s.get,
    lock = function(id, max_wait)
      local unlock, err = s.lock(id, max_wait)
      ngx.sleep(0.2)
      return unlock, err
    end,
    put = function(id, rec)
      local t0 = clock()
      local res, err = acct:get("/resource", { query = { from = "put" }, timeout = 5 })
      seen.put = outcome(res, err, t0)
      return s.put(id, rec)
    end,
  }
  local integ = accounts.integration(args)
  acct = integ:account { id = args.name, store = store, parameters = { base = args.base },
    on_token = function(a)
      local t0 = clock()
      local res, err = a:get("/resource", { query = { from = "hook" }, timeout = 5 })
      seen.hook = outcome(res, err, t0)
    end }
  local t0 = clock()
  local res, err = acct:get("/resource", { query = { from = "main" }, timeout = 10 })
  seen.main = outcome(res, err, t0)
  return seen
end
