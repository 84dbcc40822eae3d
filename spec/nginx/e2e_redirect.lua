-- Redirects followed inside a worker: an api_token account whose base_url
-- is args.base (a server of the harness that answers /to?url=U with a 302
-- to U, and echoes request headers at /echo) requests /to?url=args.to with
-- follow = true. The hop goes to the same origin (/echo) or to another
-- origin (the scripted peer): there the credentials must not arrive.
local connkit = require "connkit"

return function(args)
  local acct = connkit.integration {
    name = "E2E redirect", key = "e2eredirect", auth = "api_token", base_url = args.base,
    auth_token = { type = "header", name = "X-Api-Key", value = "{token}" },
    request_parameters = { headers = { ["X-Region"] = "eu" } },
  }:account { id = args.mark, credentials = { token = "tok-" .. args.mark } }
  local res, err = acct:get("/to", { query = { url = args.to }, follow = true, timeout = 10 })
  return {
    transport = connkit.transport(),
    status = res and res.status,
    json = res and res:json(),
    url = res and res.url,
    err = err and { code = err.code, message = tostring(err) },
  }
end
