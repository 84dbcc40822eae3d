--- An API that says "your token expired" in the body, not with a 401: a 200
-- (or a 400) whose JSON has error.code = "TOKEN_EXPIRED". refresh.on_body
-- takes such a reply for a refused token: one new token, one retry.
-- refresh.when does the same for any test a function can make.
-- Run: CLIENT_SECRET=... lua examples/refresh_on_body.lua BASE_URL [PATH]
-- (spec/refresh_rules_spec.lua runs it against the scripted peer.)
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

local base, path = arg[1] or "http://127.0.0.1:8080", arg[2] or "/rules/body200"
local crm = connkit.integration {
  name = "Body-code CRM", key = "bodycrm", auth = "oauth2",
  base_url = "{base}",
  parameters = { base = { required = true } },
  oauth2 = {
    grant_type = "client_credentials",
    token_url = "{base}/rules/token",
    client_id = "example-client",
    client_secret = need_env("CLIENT_SECRET", "the client secret"),
  },
  refresh = {
    on_status = { 401 },
    on_body = { path = "error.code", values = { "TOKEN_EXPIRED", "INVALID_SESSION" } },
    -- or any test over the reply:
    -- when = function(res) return res.headers["x-token-state"] == "expired" end,
  },
}

local acct = crm:account { parameters = { base = base } }
local res, err = acct:get(path)
if not res then error(tostring(err)) end
-- res.attempts is 2 when the first reply refused the token
print(res.status, res.attempts, res.body)
