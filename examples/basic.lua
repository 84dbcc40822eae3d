--- HTTP Basic: the library sends Authorization: Basic base64(user:password).
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

local files = connkit.integration {
  name = "Files API", key = "files", auth = "basic",
  base_url = "https://{host}/v1", parameters = { "host" },
}
local acct = files:account {
  parameters = { host = "files.example.test" },
  credentials = { username = "svc-reports", password = need_env("FILES_PASSWORD", "the password of svc-reports") },
}
local res, err = acct:post("/uploads", { json = { name = "report.csv" }, timeout = 10 })
print(res and res.status or err.code)
