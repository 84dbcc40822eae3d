-- Token renewal inside a worker. args.kind:
--   due:     a client-credentials token of args.ttl seconds (scripted
--            /token/ok) is used, goes stale while the worker sleeps, and the
--            next call renews it first;
--   refused: the resource refuses the first token it sees (scripted
--            /resource/stale-first): one refresh, one retry.
-- args.mark tags the requests for the spec's look at what the peer received.
local connkit = require "connkit"

local function account(mark, ttl)
  return connkit.integration {
    name = "E2E refresh", key = "e2erefresh", auth = "oauth2", base_url = E2E.scripted,
    oauth2 = {
      grant_type = "client_credentials", client_id = "cid", client_secret = "csecret",
      token_url = E2E.scripted .. "/token/ok?ttl=" .. ttl .. "&mark=" .. mark,
    },
  }:account { id = mark }
end

local function call(acct, path)
  local res, err = acct:get(path, { timeout = 10 })
  return { status = res and res.status, err = err and { code = err.code, message = tostring(err) } }
end

return function(args)
  local mark = args.mark
  local out = { transport = connkit.transport() }
  if args.kind == "due" then
    local ttl = tonumber(args.ttl) or 2
    local acct = account(mark, ttl)
    out.first = call(acct, "/status?code=200&mark=" .. mark .. "&n=1")
    ngx.sleep(ttl + 0.2) -- the token expires meanwhile (the worker serves others)
    out.second = call(acct, "/status?code=200&mark=" .. mark .. "&n=2")
  elseif args.kind == "refused" then
    out.first = call(account(mark, 3600), "/resource/stale-first?key=" .. mark)
  else
    error("unknown kind " .. tostring(args.kind))
  end
  return out
end
