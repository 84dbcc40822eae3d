--- HTTP Basic: the library sends Authorization: Basic base64(user:password).
local connkit = require "connkit"

local files = connkit.integration {
  name = "Files API", key = "files", auth = "basic",
  base_url = "https://{host}/v1", parameters = { "host" },
}
local acct = files:account {
  parameters = { host = "files.example.test" },
  credentials = { username = "svc-reports", password = os.getenv("FILES_PASSWORD") or "" },
}
local res, err = acct:post("/uploads", { json = { name = "report.csv" }, timeout = 10 })
print(res and res.status or err.code)
