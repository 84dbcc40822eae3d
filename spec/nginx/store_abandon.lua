-- A renewal that stays suspended inside nginx far longer than any token
-- fetch (here: a store whose first lock sleeps, args.lock_sleep; in real
-- life a light thread that died there) must not make every later caller
-- wait for it for ever. With tokens.STALLED set to 1 s: a call with a short
-- timeout waits for it and times out; once it has run for longer than
-- STALLED and its lock expired (args.lock_ttl), a call starts a renewal of
-- its own and gets a token. Run while another request (store_call, same
-- args.name) is in that long renewal.
local accounts = require "nginx._store_account"
local tokens = require "connkit.auth.tokens"

return function(args)
  local acct = accounts.account(args)
  local saved = tokens.STALLED
  tokens.STALLED = 1
  local out = { running = acct._renewal ~= nil and acct._renewal:running() }
  local res, err = acct:get("/resource", { timeout = 0.5 })
  out.waiting = { status = res and res.status, code = err and err.code }
  ngx.sleep(2.1) -- past STALLED (os.time: whole seconds) and the lock's ttl
  res, err = acct:get("/resource", { timeout = 10 })
  out.later = { status = res and res.status, code = err and err.code, message = err and err.message }
  tokens.STALLED = saved
  return out
end
