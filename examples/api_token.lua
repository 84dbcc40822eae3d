--- An API token in a header, request parameters on every request, and two
-- accounts of one integration side by side.
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

local crm = connkit.integration {
  name = "Acme CRM", key = "acmecrm", auth = "api_token",
  base_url = "https://{serverName}.acme.test/api",
  parameters = { serverName = { required = true }, region = { default = "us" } },
  auth_token = { type = "header", name = "Authorization", value = "Bearer {token}" },
  request_parameters = { headers = { ["X-Region"] = "{region}" }, query = { api_version = "2024-01" } },
  retry = { max = 3, statuses = { 429, 503 }, max_wait = 30 },
}
local dev = crm:account { id = "dev", parameters = { serverName = "dev" }, credentials = { token = need_env("ACME_DEV_TOKEN", "the dev API token") } }
local prod = crm:account { id = "prod", parameters = { serverName = "prod", region = "eu" },
  credentials = { token = need_env("ACME_PROD_TOKEN", "the prod API token") } }
for _, acct in ipairs({ dev, prod }) do
  local res, err = acct:get("/contacts/{id}", { vars = { id = 42 }, query = { fields = "name,email" } })
  if res then print(acct.id, res.status) else print(acct.id, err.code, err.message) end
end
