--- The connkit side of the sequential HTTP benchmark (see bench/README.md).
--
-- Usage: lua bench/http.lua PORT COUNT
-- Makes one untimed warm-up GET (it opens the connection), then COUNT
-- sequential GETs of /data.json through an api_token account whose requests
-- carry `Authorization: Bearer {token}`, `X-Region: {region}` and connkit's
-- default `Accept-Encoding`, the request bench/http_baseline.c sends.
-- Prints `requests=N failures=F seconds=S cpu=S`.
local connkit = require "connkit"
local socket = require "socket"   -- lua-socket: a wall clock with sub-ms resolution

local port, count = tonumber(arg[1]), tonumber(arg[2])
assert(port and count, "usage: http.lua PORT COUNT")

local acct = dofile((os.getenv("CONNKIT_ROOT") or ".") .. "/bench/bench_account.lua")(port)

local function check(res, err)
  if res and res.status == 200 and #res.body > 0 then return true end
  io.stderr:write("http.lua: ", res and ("status " .. tostring(res.status)) or tostring(err), "\n")
  return false
end

if not check(acct:get("/data.json")) then os.exit(1) end

local failures, first_failure = 0, nil
local t0, c0 = socket.gettime(), os.clock()
for i = 1, count do
  local res, err = acct:get("/data.json")
  if not (res and res.status == 200) then
    failures = failures + 1
    first_failure = first_failure or { i = i, res = res, err = err }
  end
end
local secs, cpu = socket.gettime() - t0, os.clock() - c0

if first_failure then
  io.stderr:write("http.lua: first failure at request ", first_failure.i, ": ")
  check(first_failure.res, first_failure.err)
end
io.write(("requests=%d failures=%d seconds=%.6f cpu=%.6f\n"):format(count, failures, secs, cpu))
os.exit(failures == 0 and 0 or 1)
