--- Many requests at once on one connection pool: connkit.all keeps the
-- input order and reports each outcome; a token that expires meanwhile is
-- refreshed once for all of them.
-- Run: lua examples/parallel.lua BASE_URL   (e.g. an httpbin on loopback)
local connkit = require "connkit"

local api = connkit.integration {
  name = "Catalog", key = "catalog", auth = "api_token", base_url = "{base}",
  parameters = { base = { required = true } },
  retry = { max = 2, statuses = { 429, 503 } },
}
local acct = api:account { parameters = { base = arg[1] or "http://127.0.0.1:8080" },
  credentials = { token = os.getenv("CATALOG_TOKEN") or "demo" } }

local reqs = {}
for i = 1, 50 do
  reqs[i] = assert(acct:prepare { url = "/anything/items/{i}", vars = { i = i } })
end
local t0 = os.time()
local results = connkit.all(reqs, { concurrency = 10 })
local ok, failed = 0, 0
for i, r in ipairs(results) do
  if r.res and r.res.status == 200 then ok = ok + 1
  else
    failed = failed + 1
    print(i, r.res and r.res.status or r.err.code)
  end
end
print(("%d ok, %d failed in about %d s"):format(ok, failed, os.time() - t0))
