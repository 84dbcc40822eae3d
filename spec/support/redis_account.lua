--- The shared account of the multi-process Redis specs: one definition for
-- the test process and its workers (spec/support/redis_worker.lua).
-- grant "code": authorization code with rotating refresh tokens (the oidc
-- peer's basic client); "cc": client credentials.
local connkit = require "connkit"

local M = {}

function M.integration(grant)
  local oauth2 = {
    token_url = "{issuer}/token", authorize_url = "{issuer}/auth",
    client_id = "basic-client", client_secret = "p@ss:w%rd+&/ ~", scope = "openid offline_access",
  }
  if grant == "cc" then
    oauth2 = { grant_type = "client_credentials", token_url = "{issuer}/token",
      client_id = "cc-client", client_secret = "cc:s3cret/+ %", scope = "api:read",
      extra_params = { resource = "urn:connkit:api" } }
  end
  return connkit.integration {
    name = "Fleet", key = "fleet", auth = "oauth2", base_url = "{issuer}",
    -- the hosts reach the peers at a private bridge address (test rig)
    allow_insecure_http = true,
    parameters = { issuer = { required = true } },
    oauth2 = oauth2,
    refresh = { cooldown = 1 },
  }
end

--- The account `id` on `store` against the oidc peer at `issuer`.
function M.account(grant, issuer, id, store)
  return M.integration(grant):account { id = id, parameters = { issuer = issuer }, store = store }
end

return M
