--- A custom token endpoint: log in with a user name and password, take the
-- token from data.token, send it as "Bearer {token}". On a 401 the library
-- logs in again once and retries once.
-- Run: API_PASSWORD=... lua examples/custom_token.lua BASE_URL USER
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

local legacy = connkit.integration {
  name = "Legacy ERP", key = "legacyerp", auth = "custom_token",
  base_url = "{base}",
  parameters = { base = { required = true } },
  custom_token = {
    token_url = "{base}/login",
    token_method = "POST",
    params = { user = "{username}", password = "{password}" },  -- a form body
    token_path = "data.token",
    expires_in_path = "data.ttl",
    ttl = 900,                       -- when the reply has no data.ttl
  },
  auth_token = { type = "header", name = "Authorization", value = "Bearer {token}" },
}

local acct = legacy:account {
  parameters = { base = arg[1] or "http://127.0.0.1:8080" },
  credentials = { username = arg[2] or "alice", password = need_env("API_PASSWORD", "the password of the user") },
}
local res, err = acct:get("/resource")
if not res then error(tostring(err)) end
print(res.status, res.body)
