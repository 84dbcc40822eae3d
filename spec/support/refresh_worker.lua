-- A worker process for the cross-process single-flight spec: the same
-- account, on the same encrypted file store, making `count` requests to the
-- authorization server's protected resource. Prints "ok=N fail=M".
local connkit = require "connkit"
local core = require "connkit.core"

local issuer, dir, key, count, gap = arg[1], arg[2], arg[3], tonumber(arg[4]), tonumber(arg[5])
local integ = connkit.integration {
  name = "Shared", key = "shared", auth = "oauth2", base_url = "{issuer}",
  parameters = { issuer = { required = true } },
  oauth2 = {
    token_url = "{issuer}/token", authorize_url = "{issuer}/auth",
    client_id = "basic-client", client_secret = "p@ss:w%rd+&/ ~", scope = "openid offline_access",
  },
  refresh = { cooldown = 0 },
}
local acct = integ:account { id = "shared", parameters = { issuer = issuer },
  store = connkit.store.file(dir, { key = key }) }
local ok, fail = 0, 0
for _ = 1, count do
  local res, err = acct:get("/api/me")
  if res and res.status == 200 then ok = ok + 1 else
    fail = fail + 1
    io.stderr:write("fail: ", res and tostring(res.status) or tostring(err and err.code), "\n")
  end
  core.sleep(gap)
end
io.stdout:write(("ok=%d fail=%d\n"):format(ok, fail))
