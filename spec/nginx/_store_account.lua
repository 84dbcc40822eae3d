--- The accounts of the store_* scenarios (spec/nginx/store_call.lua says
-- which args they take): a client-credentials account of the scripted peer
-- on connkit.store.shared, one per worker and args.name, kept across
-- requests as a host keeps its accounts.
local connkit = require "connkit"

local M = {}

-- These specs hold with either transport: until the ngx transport exists
-- (lua/connkit/transport/ngx.lua), requests inside nginx go over curl.
if not pcall(require, "connkit.transport.ngx") then connkit.use_transport("curl") end

local accounts = {}

function M.number(v) return v and tonumber(v) or nil end
local number = M.number

local function store_of(args)
  local s = connkit.store.shared(args.dict or "tokens", {
    key = args.key, lock_ttl = number(args.lock_ttl), lock_timeout = number(args.lock_timeout),
  })
  local pause = number(args.lock_sleep)
  if not pause then return s end
  -- the first lock taken through this store sleeps `pause` s once it holds
  -- the lock: the renewal task is then suspended inside nginx
  return {
    get = s.get, put = s.put,
    lock = function(id, max_wait)
      local unlock, err = s.lock(id, max_wait)
      if unlock and pause then
        local p = pause
        pause = nil
        ngx.sleep(p)
      end
      return unlock, err
    end,
  }
end

--- The client-credentials integration of the scripted peer for args.name
-- (`extra`: more fields of the definition, e.g. on_token).
function M.integration(args)
  return connkit.integration {
    name = "Shared store " .. args.name, key = "shared" .. args.name, auth = "oauth2",
    base_url = "{base}", parameters = { base = { required = true } },
    oauth2 = { grant_type = "client_credentials", client_id = "shared-client", client_secret = "shared:s3cret",
      token_url = "{base}/token/ok?ttl=3600&run=" .. (args.run or args.name) },
  }
end

--- This worker's account for args.name (made at its first use).
function M.account(args)
  local acct = accounts[args.name]
  if acct then return acct end
  acct = M.integration(args):account { id = args.id or args.name, store = store_of(args),
    parameters = { base = args.base } }
  accounts[args.name] = acct
  return acct
end

return M
