-- DPoP inside a worker (spec/dpop_spec.lua has the rest): a client
-- credentials account with oauth2.dpop, its token request and API calls over
-- the transport connkit picks there. args: issuer, client_id, client_secret,
-- mark, calls. Returns the transport, each call's status (or error code),
-- and the thumbprint of the account's key.
local connkit = require "connkit"

return function(args)
  local acct = connkit.integration {
    name = "E2E DPoP", key = "e2edpop", auth = "oauth2", base_url = "{issuer}",
    parameters = { issuer = { required = true } },
    oauth2 = { grant_type = "client_credentials", token_url = "{issuer}/token",
      client_id = args.client_id, client_secret = args.client_secret, dpop = true },
  }:account { id = "dpop-" .. args.mark, parameters = { issuer = args.issuer } }
  local calls = {}
  for i = 1, tonumber(args.calls or 1) do
    local res, err = acct:get("/api/dpop", { timeout = 10 })
    calls[i] = { status = res and res.status, err = err and err.code }
  end
  return {
    transport = connkit.transport(),
    calls = calls,
    jkt = require("connkit.auth.dpop").thumbprint(acct),
  }
end
