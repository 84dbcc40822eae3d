--- An API token in a header, request parameters on every request, and two
-- accounts of one integration side by side.
local connkit = require "connkit"

local crm = connkit.integration {
  name = "Acme CRM", key = "acmecrm", auth = "api_token",
  base_url = "https://{serverName}.acme.test/api",
  parameters = { serverName = { required = true }, region = { default = "us" } },
  auth_token = { type = "header", name = "Authorization", value = "Bearer {token}" },
  request_parameters = { headers = { ["X-Region"] = "{region}" }, query = { api_version = "2024-01" } },
  retry = { max = 3, statuses = { 429, 503 }, max_wait = 30 },
}
local dev = crm:account { id = "dev", parameters = { serverName = "dev" }, credentials = { token = os.getenv("ACME_DEV_TOKEN") or "" } }
local prod = crm:account { id = "prod", parameters = { serverName = "prod", region = "eu" },
  credentials = { token = os.getenv("ACME_PROD_TOKEN") or "" } }
for _, acct in ipairs({ dev, prod }) do
  local res, err = acct:get("/contacts/{id}", { vars = { id = 42 }, query = { fields = "name,email" } })
  if res then print(acct.id, res.status) else print(acct.id, err.code, err.message) end
end
