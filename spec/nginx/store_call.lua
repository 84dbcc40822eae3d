-- GET args.base/resource (the scripted peer) through a client-credentials
-- account on connkit.store.shared. One account object per worker and
-- args.name, kept across requests as a host keeps its accounts; every
-- worker's account uses the same dict and id. Raises (status 500) unless
-- the call answers 200.
-- args: base, name, id, dict (default "tokens"), key, lock_ttl,
--   lock_timeout, run (tags the token URL, so the spec counts its own
--   token requests), lock_sleep (seconds the store sleeps once it holds the
--   lock: the token fetch then yields to nginx), timeout.
local connkit = require "connkit"

local accounts = {}

local function number(v) return v and tonumber(v) or nil end

local function store_of(args)
  local s = connkit.store.shared(args.dict or "tokens", {
    key = args.key, lock_ttl = number(args.lock_ttl), lock_timeout = number(args.lock_timeout),
  })
  local pause = number(args.lock_sleep)
  if not pause then return s end
  return {
    get = s.get, put = s.put,
    lock = function(id, max_wait)
      local unlock, err = s.lock(id, max_wait)
      if unlock then ngx.sleep(pause) end
      return unlock, err
    end,
  }
end

local function account(args)
  local acct = accounts[args.name]
  if acct then return acct end
  acct = connkit.integration {
    name = "Shared store " .. args.name, key = "shared" .. args.name, auth = "oauth2",
    base_url = "{base}", parameters = { base = { required = true } },
    oauth2 = { grant_type = "client_credentials", client_id = "shared-client", client_secret = "shared:s3cret",
      token_url = "{base}/token/ok?ttl=3600&run=" .. (args.run or args.name) },
  }:account { id = args.id or args.name, store = store_of(args), parameters = { base = args.base } }
  accounts[args.name] = acct
  return acct
end

return function(args)
  local acct = account(args)
  local res, err = acct:get("/resource", { timeout = number(args.timeout) or 20 })
  if not res or res.status ~= 200 then
    error(("the call failed: %s"):format(err and (err.code .. ": " .. err.message) or res.status), 0)
  end
  return { status = res.status, pid = ngx.worker.pid() }
end
