--- Verifying an account right after connecting it, and hooks that log every
-- transfer and count replies, with the account's health from status().
-- Works against any httpbin (its /bearer answers 200 to any bearer token):
--   API_BASE=https://httpbin.org API_TOKEN=anything lua examples/verify_and_hooks.lua
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

local counts = {} -- status (or error code) -> replies
local bin = connkit.integration {
  name = "httpbin", key = "httpbin", auth = "api_token",
  base_url = os.getenv("API_BASE") or "https://httpbin.org",
  verify = { method = "GET", url = "/bearer", expect = { 200 } },
  -- info never holds a secret: query names without values, header names only
  on_request = function(info)
    print(("-> %s %s attempt %d via %s (headers: %s)"):format(info.method, info.url, info.attempt,
      info.transport, table.concat(info.headers, ", ")))
  end,
  on_response = function(info)
    local outcome = info.status or info.error
    counts[outcome] = (counts[outcome] or 0) + 1
    print(("<- %s %s %s in %.3f s"):format(info.method, info.url, tostring(outcome), info.elapsed))
  end,
}
local acct = bin:account { credentials = { token = need_env("API_TOKEN", "the API token") } }

local ok, err = acct:verify()
if not ok then
  print("verify failed:", err.code, err.status, err.message)
  os.exit(1)
end
print("verified")

-- a reply the integration did not expect is a response, not an error
local res = assert(acct:get("/status/{code}", { vars = { code = 418 }, query = { reason = "teapot" } }))
print("status", res.status)

local st = acct:status()
print("state", st.state, "last error", st.last_error and st.last_error.code or "none")
for outcome, n in pairs(counts) do print("replies", outcome, n) end
