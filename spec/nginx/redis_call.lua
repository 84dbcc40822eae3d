-- GET args.base/resource (the scripted peer) through a client-credentials
-- account on connkit.store.redis, inside nginx (spec/nginx_redis_spec.lua).
-- One account object per worker and args.name, kept across requests as a
-- host keeps its accounts; the plain Lua side of the spec defines the same
-- integration and account id, so both share one record in Redis.
-- args: base, conf (a file: URL and key), name, run (tags the token URL), ttl (the token's
-- lifetime), timeout. Raises (status 500) unless the call answers 200.
local connkit = require "connkit"

-- the store's URL and key, read from the file args.conf (one a line), so
-- the password and the key are not in the request line nginx logs
local function conf(args)
  local f = assert(io.open(args.conf, "rb"))
  local url, key = f:read("*l", "*l")
  f:close()
  return url, key
end

local accounts = {}

local function account(args)
  local acct = accounts[args.name]
  if acct then return acct end
  local integ = connkit.integration {
    name = "Redis fleet " .. args.name, key = "redisfleet", auth = "oauth2",
    base_url = "{base}", parameters = { base = { required = true } },
    oauth2 = { grant_type = "client_credentials", client_id = "fleet-client", client_secret = "fleet:s3cret",
      token_url = "{base}/token/ok?ttl=" .. (args.ttl or "3600") .. "&run=" .. args.run },
    refresh = { cooldown = 0.2 },
  }
  local url, key = conf(args)
  acct = integ:account { id = args.name, parameters = { base = args.base },
    store = connkit.store.redis { url = url, key = key, timeout = tonumber(args.timeout) } }
  accounts[args.name] = acct
  return acct
end

return function(args)
  local res, err = account(args):get("/resource", { timeout = 20 })
  if not res or res.status ~= 200 then
    error(("the call failed: %s"):format(err and (err.code .. ": " .. err.message) or res.status), 0)
  end
  -- which workers served args.name (redis_store op=served reads it)
  local served = ngx.shared.fleet
  if served then served:incr("served/" .. args.name .. "/" .. ngx.worker.pid(), 1, 0) end
  return { status = res.status, pid = ngx.worker.pid() }
end
