--- The connkit side of the concurrent HTTP benchmark (see bench/README.md).
--
-- Usage: lua bench/multi.lua PORT COUNT CONCURRENCY
-- Prepares COUNT GETs of /data.json through the same api_token account as
-- bench/http.lua and runs them with connkit.all(requests, {concurrency = n}),
-- after an untimed warm-up round of CONCURRENCY requests that opens the
-- connections, as bench/multi_baseline.c does. The timed part covers
-- preparing the requests and running them. Prints
-- `requests=N failures=F seconds=S cpu=S prepare=S` (prepare: the part of
-- seconds spent in acct:prepare), or `skipped: ...` when this build of connkit
-- has no connkit.all yet.
local connkit = require "connkit"
local socket = require "socket"   -- lua-socket: a wall clock with sub-ms resolution

local port, count, concurrency = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3])
assert(port and count and concurrency, "usage: multi.lua PORT COUNT CONCURRENCY")

if connkit.all == nil then
  print("skipped: connkit.all not yet available")
  os.exit(0)
end

local api = connkit.integration {
  name = "Bench API",
  key = "benchapi",
  auth = "api_token",
  base_url = "http://127.0.0.1:{port}",
  parameters = { port = { required = true }, region = { default = "us" } },
  auth_token = { type = "header", name = "Authorization", value = "Bearer {token}" },
  request_parameters = { headers = { ["X-Region"] = "{region}" } },
}
local acct = api:account {
  parameters = { port = tostring(port) },
  credentials = { token = "bench-token" },
}

-- Prepares n requests and runs them; returns failures, the first one and
-- the wall time spent preparing.
local function round(n)
  local reqs = {}
  local p0 = socket.gettime()
  for i = 1, n do reqs[i] = acct:prepare { method = "GET", url = "/data.json" } end
  local prep = socket.gettime() - p0
  local results = connkit.all(reqs, { concurrency = concurrency })
  local failures, first = 0, nil
  for i = 1, n do
    local r = results[i]
    local res = r and r.res
    if not (res and res.status == 200 and #res.body > 0) then
      failures = failures + 1
      first = first or (res and ("status " .. tostring(res.status)) or tostring(r and r.err))
    end
  end
  return failures, first, prep
end

local warm_fail, warm_first = round(concurrency)
if warm_fail > 0 then
  io.stderr:write("multi.lua: warm-up failed: ", tostring(warm_first), "\n")
  os.exit(1)
end

local t0, c0 = socket.gettime(), os.clock()
local failures, first, prep = round(count)
local secs, cpu = socket.gettime() - t0, os.clock() - c0

if first then io.stderr:write("multi.lua: first failure: ", first, "\n") end
io.write(("requests=%d failures=%d seconds=%.6f cpu=%.6f prepare=%.6f\n"):format(count, failures, secs, cpu, prep))
os.exit(failures == 0 and 0 or 1)
