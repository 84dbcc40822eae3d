--- Rate limits as a rule: a client-side bucket (at most 5 requests a
-- second after a burst of 2) and the server's own pause (x-ratelimit-*
-- headers), declared once in the integration. A request that would have
-- to wait longer than max_wait fails at once, unsent, with
-- err.code "rate_limited" and err.retry_at.
-- Run: lua examples/rate_limit.lua BASE_URL
--   (BASE_URL: the scripted test peer, whose /rl/window answers with
--   x-ratelimit-remaining and x-ratelimit-reset; spec/rate_limit_spec.lua
--   runs this example against it)
local connkit = require "connkit"

local api = connkit.integration {
  name = "Limited", key = "limited", auth = "none", base_url = "{base}",
  parameters = { base = { required = true } },
  rate_limit = {
    remaining = "x-ratelimit-remaining", reset = "x-ratelimit-reset", reset_is = "seconds",
    per_second = 5, burst = 2,   -- the client's own pace
    max_wait = 3,                -- wait up to 3 s for the server's reset, else fail at once
    scope = "integration",       -- every account of the integration shares the limits
  },
}
local acct = api:account { parameters = { base = arg[1] or "http://127.0.0.1:8080" } }

-- 1. The bucket: six requests, the last four about 0.2 s apart.
local key = "example-" .. os.time()
for i = 1, 6 do
  local res, err = acct:get("/rl/ok", { query = { n = i } })
  if not res then error(err) end
end
print("6 requests sent at the bucket's pace")

-- 2. The server's pause: a window of 2 requests per 2 s. The third request
-- waits for the reset (2 s, within max_wait) instead of getting a 429.
local q = { key = key, limit = 2, window = 2 }
for i = 1, 3 do
  local res, err = acct:get("/rl/window", { query = q })
  if not res then error(err) end
  print(("request %d: %d, remaining %s"):format(i, res.status, res.headers["x-ratelimit-remaining"]))
end

-- 3. Beyond max_wait: a window of 1 request per 30 s. The second request
-- would wait 30 s: it fails at once, and nothing is sent.
local q30 = { key = key .. "-long", limit = 1, window = 30 }
assert(acct:get("/rl/window", { query = q30 }))
local res, err = acct:get("/rl/window", { query = q30 })
assert(res == nil)
print(("%s: %s (retry at %s)"):format(err.code, err.message, os.date("!%H:%M:%S", math.floor(err.retry_at))))

-- 4. One request that must go anyway bypasses the rule.
res = assert(acct:get("/rl/window", { query = q30, rate_limit = false }))
print(("bypassed: %d (the server says no itself)"):format(res.status))
print("done")
