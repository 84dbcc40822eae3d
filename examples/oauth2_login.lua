--- OAuth 2.0 authorization code with PKCE and an RFC 8252 loopback login,
-- kept in an encrypted file store so the next run needs no login.
-- Run: CONNKIT_KEY=$(openssl rand -base64 32) lua examples/oauth2_login.lua ISSUER
local connkit = require "connkit"

local issuer = arg[1] or "http://127.0.0.1:3000"
local idp = connkit.integration {
  name = "Acme CRM", key = "acmecrm", auth = "oauth2",
  base_url = "{issuer}",
  parameters = { issuer = { required = true } },
  oauth2 = {
    grant_type = "authorization_code",
    authorize_url = "{issuer}/auth",
    token_url = "{issuer}/token",
    revoke_url = "{issuer}/token/revocation",
    issuer = "{issuer}",                 -- checked against iss (RFC 9207)
    client_id = "public-client",
    client_auth = "none",                -- a public client: PKCE protects the code
    scope = "openid offline_access",
  },
}

local acct = idp:account {
  id = "me",
  parameters = { issuer = issuer },
  store = connkit.store.file(os.getenv("HOME") .. "/.local/share/acmecrm", { key = os.getenv("CONNKIT_KEY") }),
}
if not acct:status().authorized then
  -- prints the URL; open = true would start the browser too
  local ok, err = acct:login { port = 0, timeout = 120, open = false }
  if not ok then error(tostring(err)) end
end
local res = assert(acct:get("/api/me"))
print(res.status, res.body)
