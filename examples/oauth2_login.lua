--- OAuth 2.0 authorization code with PKCE and an RFC 8252 loopback login,
-- kept in an encrypted file store so the next run needs no login.
-- Run: CONNKIT_KEY=$(openssl rand -base64 32) lua examples/oauth2_login.lua ISSUER
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
  store = connkit.store.file(need_env("HOME", "your home directory") .. "/.local/share/acmecrm",
    { key = need_env("CONNKIT_KEY", "the store key: openssl rand -base64 32") }),
}
if not acct:status().authorized then
  -- prints the URL; open = true would start the browser too
  local ok, err = acct:login { port = 0, timeout = 120, open = false }
  if not ok then error(tostring(err)) end
end
local res = assert(acct:get("/api/me"))
print(res.status, res.body)
