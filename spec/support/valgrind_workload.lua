-- The script `make test-valgrind` runs under valgrind (tools/valgrind.sh):
-- one pass through every C path connkit has, against the suite's real peers
-- on loopback, ending with a normal exit so that lua_close frees what Lua
-- holds and valgrind's leak check sees what is left. It asserts as it goes
-- (a failure exits non-zero) and prints one line per part.
local connkit = require "connkit"
local core = require "connkit.core"
local helpers = require "helpers"

local function say(fmt, ...) io.write((fmt):format(...), "\n") io.flush() end

local function main()
  local hb, ng = helpers.peer("httpbin"), helpers.peer("nginx")

  -- HTTP: templates, query, headers, a JSON body, the reply parsed
  local api = connkit.integration {
    name = "Echo", key = "echo", auth = "api_token", base_url = "{base}/anything/{tenant}",
    parameters = { base = { required = true }, tenant = { required = true } },
    auth_token = { type = "header", name = "Authorization", value = "Bearer {token}" },
  }
  local acct = api:account { parameters = { base = hb.url, tenant = "a b/c" }, credentials = { token = "tok-v" } }
  local res = assert(acct:post("/items/{id}", { vars = { id = "1/2" }, query = { q = "x y" }, json = { n = 1, s = "é" } }))
  assert(res.status == 200 and res:json().headers.Authorization == "Bearer tok-v", res.body)
  say("http: %d %s", res.status, res:json().url)

  -- redirects, an error reply, a timeout, a refused connection, gzip
  assert(assert(acct:get(hb.url .. "/redirect/2", { follow = true })).status == 200)
  assert(assert(acct:get(hb.url .. "/status/503", { retry = false })).status == 503)
  local _, terr = acct:get(hb.url .. "/delay/3", { timeout = 0.5 })
  assert(terr and terr.code == "timeout", tostring(terr))
  local _, cerr = acct:get("http://127.0.0.1:" .. helpers.free_port() .. "/")
  assert(cerr and cerr.code == "connect", tostring(cerr))
  assert(assert(acct:get(hb.url .. "/gzip")):json().gzipped == true)
  say("errors: %s, %s", terr.code, cerr.code)

  -- TLS with the peer's CA, and a refused certificate
  local tls = api:account { parameters = { base = ng.https_url, tenant = "t" }, credentials = { token = "t" },
    tls = { ca_file = ng.ca_file } }
  assert(assert(tls:get(ng.https_url .. "/echo/tls")).status == 200)
  local _, tlserr = api:account { parameters = { base = ng.https_url, tenant = "t" }, credentials = { token = "t" } }
    :get(ng.https_url .. "/echo/tls")
  assert(tlserr and tlserr.code == "tls", tostring(tlserr))
  say("tls: ok, unknown CA -> %s", tlserr.code)

  -- many at once, and a non-blocking handle, one of them cancelled
  local reqs = {}
  for i = 1, 40 do reqs[i] = assert(acct:prepare { url = hb.url .. "/bytes/" .. (i * 1000) }) end
  local results = connkit.all(reqs, { concurrency = 10 })
  for i = 1, 40 do assert(#assert(results[i].res, tostring(results[i].err)).body == i * 1000) end
  local h = assert(acct:prepare { url = hb.url .. "/get" }):start()
  local slow = assert(acct:prepare { url = hb.url .. "/delay/5" }):start()
  slow:cancel()
  assert(assert(h:result()).status == 200)
  say("parallel: 40 done, handle ok, one cancelled")

  -- OAuth 2.0 client credentials on the encrypted file store, and a refresh
  local op = helpers.peer("oidc")
  local dir = helpers.tmpdir("valgrind-store")
  local store = connkit.store.file(dir, { key = core.b64encode(core.random(32)) })
  local svc = connkit.integration {
    name = "Reports", key = "reports", auth = "oauth2", base_url = "{issuer}",
    parameters = { issuer = { required = true } },
    oauth2 = { grant_type = "client_credentials", token_url = "{issuer}/token",
      client_id = op.clients.cc.id, client_secret = op.clients.cc.secret },
  }:account { id = "reports", parameters = { issuer = op.issuer }, store = store }
  assert(assert(svc:get("/api/me")).status == 200)
  assert(svc:refresh())
  assert(assert(store.get("reports")).access_token)
  local unlock = assert(store.lock("reports"))
  unlock()
  say("oauth2 + file store: ok")

  -- SFTP: ed25519 and ECDSA logins, put, get, read, list, remove
  local ssh = helpers.peer("sshd")
  local work = helpers.tmpdir("valgrind-sftp")
  helpers.write_file(work .. "/up.bin", ("0123456789abcdef"):rep(65536)) -- 1 MiB
  for _, k in ipairs({ "ed25519", "ecdsa" }) do
    local s = assert(connkit.integration {
      name = "Files " .. k, key = "files" .. k, auth = "sftp",
      parameters = { server = { required = true } },
      sftp = { host = "{server}", port = tostring(ssh.port), host_key = ssh.host_keys["ssh-ed25519"].fingerprint, timeout = 10 },
    }:account { parameters = { server = "127.0.0.1" },
      credentials = { username = ssh.user, private_key = ssh.keys[k].path } }:sftp())
    local remote = ssh.dir .. "/valgrind-" .. k .. ".bin"
    assert(s:put(work .. "/up.bin", remote) == 1048576)
    assert(s:get(remote, work .. "/down.bin") == 1048576)
    assert(helpers.read_file(work .. "/down.bin") == helpers.read_file(work .. "/up.bin"))
    local f = assert(s:open(remote, "r"))
    assert(f:read(16) == "0123456789abcdef")
    f:close()
    assert(#assert(s:list(ssh.dir)) >= 1)
    assert(s:remove(remote))
    s:close()
  end
  say("sftp: ed25519 and ecdsa, 1 MiB each way")
  helpers.execute("rm -rf " .. helpers.shell_quote(dir) .. " " .. helpers.shell_quote(work))
end

local ok, err = xpcall(main, debug.traceback)
helpers.stop_peers()
if not ok then error(err, 0) end -- the interpreter prints it, closes the state, exits 1
say("valgrind workload done")
