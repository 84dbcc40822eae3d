-- OAuth 2.0 authorization code inside a worker: the account's tokens were
-- stored (file store args.dir, key E2E.store_key) by a login outside nginx;
-- here the same account calls oidc-provider's /api/me. The spec revoked
-- the stored access token at the server first, so the call is refused,
-- the stored refresh token is used (one refresh) and the call retried.
local connkit = require "connkit"

return function(args)
  local acct = connkit.integration(E2E.authcode_definition()):account {
    id = args.id, parameters = { issuer = E2E.oidc.issuer },
    store = connkit.store.file(args.dir, { key = E2E.store_key }),
  }
  local res, err = acct:get("/api/me", { timeout = 10 })
  return {
    transport = connkit.transport(),
    status = res and res.status,
    json = res and res:json(),
    err = err and { code = err.code, message = tostring(err) },
    authorized = acct:status().authorized,
  }
end
