--- OAuth 2.0 client credentials: a service account calling an API.
-- The token is fetched on first use, reused, and fetched again when it nears
-- expiry. Run: lua examples/oauth2_client_credentials.lua ISSUER CLIENT_ID
-- with the client secret in CLIENT_SECRET (never on the command line).
local connkit = require "connkit"

-- A secret comes from the environment; unset or empty is a clear stop, never "".
local function need_env(name, what)
  local v = os.getenv(name)
  if v == nil or v == "" then
    io.stderr:write(("%s: set %s (%s) and run again\n"):format(arg and arg[0] or "example", name, what))
    os.exit(2)
  end
  return v
end

local issuer, client_id = arg[1] or "http://127.0.0.1:3000", arg[2] or "cc-client"
local reports = connkit.integration {
  name = "Reports API", key = "reports", auth = "oauth2",
  base_url = "{issuer}",
  parameters = { issuer = { required = true }, audience = { default = "{issuer}/api" } },
  oauth2 = {
    grant_type = "client_credentials",
    token_url = "{issuer}/token",
    client_id = client_id,
    client_secret = need_env("CLIENT_SECRET", "the client secret"),
    scope = "api:read",
    extra_params = { resource = "{issuer}/api" },  -- RFC 8707, sent every time
  },
  refresh = { window = 300 },
}

local acct = reports:account {
  id = "reports-prod",
  parameters = { issuer = issuer },
  on_token = function(_, info) print(("new token, expires in %d s"):format(info.expires_in)) end,
}
local res, err = acct:get("/api/me")
if not res then error(tostring(err)) end
print(res.status, res.body)
print("status:", acct:status().authorized, acct:status().expires_in)
