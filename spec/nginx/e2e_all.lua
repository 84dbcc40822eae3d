-- connkit.all inside a worker: args.n requests to scripted /delay?s=args.s
-- (each tagged with its index) with concurrency args.c, an api_token
-- account (or args.auth = "oauth2": client credentials, no token yet). Returns each reply's index as the peer echoed it, in order, and
-- the wall time (n/c rounds of s seconds when the bound holds).
local connkit = require "connkit"

local function account(args)
  if args.auth == "oauth2" then
    -- a client-credentials account with no token yet: the light threads
    -- wait for one token request
    return connkit.integration {
      name = "E2E all oauth2", key = "e2eallcc", auth = "oauth2", base_url = E2E.scripted,
      oauth2 = {
        grant_type = "client_credentials", client_id = "cid", client_secret = "csecret",
        token_url = E2E.scripted .. "/token/ok?ttl=3600&mark=" .. args.mark,
      },
    }:account { id = args.mark }
  end
  return connkit.integration {
    name = "E2E all", key = "e2eall", auth = "api_token", base_url = E2E.scripted,
    auth_token = { type = "header", name = "X-Api-Key", value = "{token}" },
  }:account { id = args.mark, credentials = { token = "tok-" .. args.mark } }
end

return function(args)
  local acct = account(args)
  local reqs = {}
  for i = 1, tonumber(args.n) do
    reqs[i] = acct:prepare { url = "/delay", query = { s = args.s, mark = args.mark, i = i }, timeout = 10 }
  end
  ngx.update_time()
  local t0 = ngx.now()
  local results = connkit.all(reqs, { concurrency = tonumber(args.c) })
  ngx.update_time()
  local out = { transport = connkit.transport(), elapsed = ngx.now() - t0, results = {} }
  for i, r in ipairs(results) do
    out.results[i] = { status = r.res and r.res.status, err = r.err and r.err.code }
  end
  return out
end
