--- The account bench/http.lua and bench/multi.lua make their requests
-- through: api_token, `Authorization: Bearer {token}` and one request
-- parameter header, `X-Region: {region}`, with connkit's default
-- `Accept-Encoding` line -- the request the C baselines send
-- (bench/accept_encoding.h). Loaded with dofile: returns
-- function(port) -> account.
local connkit = require "connkit"

return function(port)
  local api = connkit.integration {
    name = "Bench API",
    key = "benchapi",
    auth = "api_token",
    base_url = "http://127.0.0.1:{port}",
    parameters = { port = { required = true }, region = { default = "us" } },
    auth_token = { type = "header", name = "Authorization", value = "Bearer {token}" },
    request_parameters = { headers = { ["X-Region"] = "{region}" } },
  }
  return api:account {
    parameters = { port = tostring(port) },
    credentials = { token = "bench-token" },
  }
end
