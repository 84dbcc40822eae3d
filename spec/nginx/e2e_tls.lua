-- HTTPS inside a worker, trust from nginx's lua_ssl_trusted_certificate:
-- args.base is an https origin; args.ca_file, when given, goes into the
-- definition's tls.ca_file (which the ngx transport cannot honour).
local connkit = require "connkit"

return function(args)
  local def = { name = "E2E TLS", key = "e2etls", auth = "none", base_url = args.base }
  if args.ca_file then def.tls = { ca_file = args.ca_file } end
  local res, err = connkit.integration(def):account {}:get(args.path or "/ping", { timeout = 5 })
  return {
    transport = connkit.transport(),
    status = res and res.status,
    body = res and res.body,
    err = err and { code = err.code, message = tostring(err) },
  }
end
