--- The store's cost on the request path (see bench/README.md).
--
-- Usage: lua bench/store.lua PORT COUNT memory|file [DIR]
-- An oauth2 client_credentials account whose token endpoint is nginx's
-- /token (a fixed JSON reply, one-day token), kept in the default memory
-- store or in connkit.store.file(DIR). The token is fetched by an untimed
-- warm-up request; then COUNT sequential GETs of /data.json are timed: the
-- store should be read on refresh, not on every request.
-- Prints `requests=N failures=F seconds=S cpu=S`, or `skipped: ...` when this
-- build of connkit has no file store or no oauth2 yet.
local connkit = require "connkit"
local socket = require "socket"   -- lua-socket: a wall clock with sub-ms resolution

local port, count, kind, dir = tonumber(arg[1]), tonumber(arg[2]), arg[3], arg[4]
assert(port and count and (kind == "memory" or (kind == "file" and dir)),
  "usage: store.lua PORT COUNT memory|file [DIR]")

if not (connkit.store and connkit.store.file) then
  print("skipped: connkit.store.file not yet available")
  os.exit(0)
end

local ok, api = pcall(connkit.integration, {
  name = "Bench OAuth API",
  key = "benchoauth",
  auth = "oauth2",
  base_url = "http://127.0.0.1:{port}",
  parameters = { port = { required = true }, region = { default = "us" } },
  oauth2 = {
    grant_type = "client_credentials",
    token_url = "http://127.0.0.1:{port}/token",
    client_id = "bench-client",
    client_secret = "bench-secret",
  },
  auth_token = { type = "header", name = "Authorization", value = "Bearer {token}" },
  request_parameters = { headers = { ["X-Region"] = "{region}" } },
})
if not ok then
  print("skipped: oauth2 client_credentials not available: " .. tostring(api))
  os.exit(0)
end

-- A fixed 32-byte key (base64): this is a benchmark, not a secret.
local store = kind == "file"
  and connkit.store.file(dir, { key = "YmVuY2gta2V5LWJlbmNoLWtleS1iZW5jaC1rZXktMzI=" })
  or connkit.store.memory()
local acct = api:account {
  id = "bench",
  parameters = { port = tostring(port) },
  store = store,
}

local res, err = acct:get("/data.json")
if not (res and res.status == 200) then
  io.stderr:write("store.lua: warm-up failed: ", res and ("status " .. res.status) or tostring(err), "\n")
  os.exit(1)
end

local failures, first = 0, nil
local t0, c0 = socket.gettime(), os.clock()
for _ = 1, count do
  res, err = acct:get("/data.json")
  if not (res and res.status == 200) then
    failures = failures + 1
    first = first or (res and ("status " .. tostring(res.status)) or tostring(err))
  end
end
local secs, cpu = socket.gettime() - t0, os.clock() - c0

if first then io.stderr:write("store.lua: first failure: ", first, "\n") end
io.write(("requests=%d failures=%d seconds=%.6f cpu=%.6f\n"):format(count, failures, secs, cpu))
os.exit(failures == 0 and 0 or 1)
