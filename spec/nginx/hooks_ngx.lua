-- Hooks, status() and verify() inside nginx (spec/hooks_spec.lua): a
-- client-credentials account on the scripted peer (args.scripted) whose
-- hooks record what they see; its tokens are made invalid (args.invalidate,
-- a URL of the peer) so that the next call is refused, refreshed and
-- retried; then connkit.all of two requests and verify(). Returns what the
-- hooks saw, in order, and the outcomes.
local connkit = require "connkit"

return function(args)
  local seen = {}
  local function rec(name) return function(info) seen[#seen + 1] = { name = name, info = info } end end
  local acct = connkit.integration {
    name = "Hooks ngx", key = "hooksngx", auth = "oauth2", base_url = args.scripted,
    oauth2 = { grant_type = "client_credentials", token_url = args.scripted .. "/token/ok",
      client_id = "ngx-client", client_secret = "ngx-client-secret-value" },
    verify = { url = "/resource" },
    on_request = rec("request"), on_response = rec("response"),
  }:account { id = "hooksngx-" .. args.mark }
  local out = { transport = connkit.transport() }
  out.first = assert(acct:get("/resource")).status
  -- every token issued so far becomes invalid (a plain request to the peer)
  local plain = connkit.integration { name = "p", key = "hooksngxplain", auth = "none" }:account {}
  assert(plain:post(args.scripted .. "/invalidate-all"))
  local res = assert(acct:get("/resource"))
  out.second = { status = res.status, attempts = res.attempts }
  local results = connkit.all({ acct:prepare { url = "/resource" }, acct:prepare { url = "/resource" } })
  out.all = { results[1].res.status, results[2].res.status }
  out.verify = acct:verify()
  out.state = acct:status().state
  out.seen = seen
  out.token = acct:token()
  return out
end
