--- A token reply that says where the API is: Salesforce answers
-- instance_url with every token, and every call goes there.
-- token_metadata fills the {instanceUrl} parameter from the reply; the
-- value is kept with the token in the store and read again at each refresh.
-- Run: CLIENT_SECRET=... lua examples/token_metadata.lua TOKEN_URL [PATH]
-- (spec/token_metadata_spec.lua runs it against the scripted peer.)
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

local token_url, path = arg[1] or "https://login.salesforce.com/services/oauth2/token", arg[2] or "limits"
local sf = connkit.integration {
  name = "Salesforce", key = "salesforce", auth = "oauth2",
  -- (Salesforce itself: "{instanceUrl}/services/data/v59.0/")
  base_url = "{instanceUrl}/",
  parameters = {
    instanceUrl = {},  -- no value at account creation: the token brings it
  },
  oauth2 = {
    grant_type = "client_credentials",
    token_url = token_url,
    client_id = os.getenv("CLIENT_ID") or "example-client",
    client_secret = need_env("CLIENT_SECRET", "the client secret"),
    token_metadata = { instanceUrl = "instance_url" },  -- parameter <- JSON path of the token reply
  },
}

local acct = sf:account {}
-- the first request fetches the token first: base_url needs its instance_url
local res, err = acct:get(path)
if not res then error(tostring(err)) end
print(res.status, res.body)
