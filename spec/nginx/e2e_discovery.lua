-- Discovery inside a worker (spec/discovery_spec.lua has the rest): the
-- issuer's metadata is fetched over the transport connkit picks there.
-- args.issuer: the issuer; args.path: the API path to call; args.mark
-- tags the calls. Returns what each call gave (code on failure).
local connkit = require "connkit"

return function(args)
  local acct = connkit.integration {
    name = "E2E discovery", key = "e2edisc", auth = "oauth2", base_url = args.base,
    parameters = { issuer = { required = true } },
    oauth2 = {
      issuer = "{issuer}", grant_type = "client_credentials", scope = args.scope,
      client_id = args.client_id, client_secret = args.client_secret,
      extra_params = args.resource and { resource = args.resource } or nil,
    },
  }:account { id = "disc-" .. args.mark, parameters = { issuer = args.issuer } }
  local res, err = acct:get(args.path, { timeout = 10 })
  return {
    transport = connkit.transport(),
    status = res and res.status,
    err = err and { code = err.code, message = tostring(err) },
  }
end
