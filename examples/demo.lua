--- make demo: the main job end to end on loopback. It starts its own peers
-- (httpbin, and nginx for TLS) on free 127.0.0.1 ports, defines integrations,
-- connects accounts and makes requests, printing what happens. Secrets are
-- never printed: only what the server saw, with the secrets masked.
local connkit = require "connkit"
local helpers = require "helpers"   -- the spec helpers start and stop the peers

local function say(fmt, ...) io.write((fmt):format(...), "\n") end
local function mask(s, secret) return (s:gsub(secret:gsub("%p", "%%%0"), "***")) end

local ok, err = pcall(function()
  local hb = helpers.peer("httpbin")
  say("%s (libcurl %s, libssh2 %s)", connkit._VERSION, connkit.curl_version, connkit.libssh2_version)
  say("httpbin on %s", hb.url)

  -- 1. One integration, defined once.
  local crm = connkit.integration {
    name = "Acme CRM", key = "acmecrm", auth = "api_token",
    base_url = "{base}/anything/{tenant}",
    parameters = { base = { required = true }, tenant = { required = true }, region = { default = "us" } },
    auth_token = { type = "header", name = "Authorization", value = "Bearer {token}" },
    request_parameters = { headers = { ["X-Region"] = "{region}" }, query = { api_version = "2024-01" } },
  }
  say("\n%s", tostring(crm))

  -- 2. Accounts side by side: DEV and PROD, each with its own token.
  local dev_token, prod_token = "dev-" .. os.time(), "prod-" .. os.time()
  local dev = crm:account { id = "dev", parameters = { base = hb.url, tenant = "acme dev" }, credentials = { token = dev_token } }
  local prod = crm:account { id = "prod", parameters = { base = hb.url, tenant = "acme", region = "eu" },
    credentials = { token = prod_token } }
  for _, acct in ipairs({ dev, prod }) do
    local res = assert(acct:get("/contacts/{id}", { vars = { id = "42/a b" }, query = { limit = 10 } }))
    local seen = res:json()
    say("%s -> %d: server saw %s", tostring(acct), res.status, seen.url)
    say("    Authorization: %s   X-Region: %s", mask(mask(seen.headers.Authorization, dev_token), prod_token),
      seen.headers["X-Region"])
  end

  -- 3. A JSON body, and a reply that is not 2xx (a response, not an error).
  local res = assert(prod:post("/contacts", { json = { name = "Ada", tags = { "vip" } } }))
  say("POST json -> %d, server got json name=%s", res.status, res:json().json.name)
  local teapot = assert(prod:get(hb.url .. "/status/418"))
  say("GET /status/418 -> %d (a response)", teapot.status)

  -- 4. Errors are values with stable codes, and never hold a secret.
  local _, terr = prod:get(hb.url .. "/delay/3", { timeout = 0.5 })
  say("timeout -> err.code=%s: %s", terr.code, tostring(terr))
  local _, cerr = prod:get("http://127.0.0.1:" .. helpers.free_port() .. "/")
  say("refused -> err.code=%s", cerr.code)

  -- 5. Basic auth.
  local basic = connkit.integration { name = "Files API", key = "files", auth = "basic", base_url = "{base}",
    parameters = { "base" } }
  local b = basic:account { parameters = { base = hb.url }, credentials = { username = "demo", password = "pa55 word" } }
  local r = assert(b:get("/basic-auth/demo/{pw}", { vars = { pw = "pa55 word" } }))
  say("\nbasic auth -> %d %s", r.status, r.body:gsub("%s+", " "))

  -- 6. Several requests at once on the shared connection pool.
  local reqs = {}
  for i = 1, 5 do reqs[i] = assert(dev:prepare { url = "/page/" .. i }) end
  local t0 = os.clock()
  local results = connkit.all(reqs, { concurrency = 5 })
  local statuses = {}
  for i, x in ipairs(results) do statuses[i] = x.res and x.res.status or x.err.code end
  say("connkit.all x5 -> %s (%.3f s CPU)", table.concat(statuses, " "), os.clock() - t0)
  say("prepared request: %s", tostring(reqs[1]))

  -- 7. OAuth 2.0 client credentials against a real authorization server
  --    (oidc-provider) whose tokens live 4 s: watch the token being renewed.
  local op = helpers.peer("oidc").new { cc_ttl = 4 }
  say("\noidc-provider on %s", op.issuer)
  local svc = connkit.integration {
    name = "Reports API", key = "reports", auth = "oauth2", base_url = "{issuer}",
    parameters = { issuer = { required = true } },
    oauth2 = { grant_type = "client_credentials", token_url = "{issuer}/token",
      client_id = op.clients.cc.id, client_secret = op.clients.cc.secret, scope = "api:read" },
  }:account { id = "reports", parameters = { issuer = op.issuer },
    on_token = function(a, info) say("  on_token: %s got a new token, expires in %d s", a.id, info.expires_in) end }
  for i = 1, 4 do
    local me = assert(svc:get("/api/me"))
    say("  GET /api/me #%d -> %d (%s)", i, me.status, me:json().kind)
    if i < 4 then require("connkit.core").sleep(1.2) end
  end
  say("  token requests seen by the server: %d", op.stats().token.total)

  -- 8. Authorization code + PKCE with an RFC 8252 loopback login. A headless
  --    "browser" (curl) plays the user: it follows the URL, logs in, and
  --    comes back to the loopback listener.
  local app = connkit.integration {
    name = "Acme CRM", key = "acmelogin", auth = "oauth2", base_url = "{issuer}",
    parameters = { issuer = { required = true } },
    oauth2 = { authorize_url = "{issuer}/auth", token_url = "{issuer}/token", issuer = "{issuer}",
      revoke_url = "{issuer}/token/revocation",
      client_id = op.clients.public.id, client_auth = "none", scope = "openid offline_access" },
  }:account { id = "me", parameters = { issuer = op.issuer } }
  local browser
  local lok, lerr = app:login { timeout = 30, on_url = function(url)
    say("  login URL (state + S256 challenge): %s...", url:sub(1, 60))
    browser = op.browse(url)
  end }
  helpers.stop(browser)
  say("  login -> %s; status: %s", tostring(lok or lerr), require("cjson").encode(app:status()))
  local me = assert(app:get("/api/me"))
  say("  GET /api/me as the user -> %d sub=%s", me.status, me:json().sub)
  assert(app:refresh())
  say("  refresh (rotated) -> ok; revoke -> %s", tostring(app:revoke()))
  op.stop()
end)

helpers.stop_peers()
if not ok then
  io.stderr:write("demo failed: ", tostring(err), "\n")
  os.exit(1)
end
say("\ndemo done")
