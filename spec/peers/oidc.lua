--- oidc-provider (npm, pinned in spec/oidc) on a free loopback port: a real
-- OAuth 2.0 authorization server with headless login + consent and
-- test-control routes (spec/oidc/server.js). `helpers.peer("oidc")` gives the
-- shared instance; `info.new{ access_ttl = 5 }` starts a private one.
--
-- Info fields: port, url (= issuer), issuer, endpoints{...}, clients{...},
-- user, resource, and the functions documented below.
local http = require "scripted.http"

local function start(helpers, opts)
  opts = opts or {}
  local root = helpers.root
  local server = root .. "/spec/oidc/server.js"
  if not helpers.execute("test -d " .. helpers.shell_quote(root .. "/spec/oidc/node_modules/oidc-provider")) then
    error("spec/oidc/node_modules is missing: run `make deps` (npm ci in spec/oidc)")
  end
  local port = helpers.free_port()
  local env = { PORT = tostring(port) }
  local names = { access_ttl = "ACCESS_TTL", cc_ttl = "CC_TTL", refresh_ttl = "REFRESH_TTL",
    device_ttl = "DEVICE_TTL", device_interval = "DEVICE_INTERVAL" }
  for k, v in pairs(opts) do
    if k == "env" then -- more environment for spec/oidc/ext/*.mjs (e.g. MTLS_PORT: ext/mtls.mjs)
      for ek, ev in pairs(v) do env[ek] = tostring(ev) end
    else
      assert(names[k], "oidc peer: unknown option " .. tostring(k))
      env[names[k]] = tostring(v)
    end
  end
  -- node_compat.mjs lets oidc-provider 9 run on Debian 12's Node 18 too
  local compat = root .. "/spec/peers/node_compat.mjs"
  local proc = helpers.spawn("oidc", ("node --import %s %s"):format(helpers.shell_quote(compat),
    helpers.shell_quote(server)), { env = env })
  helpers.wait_port(port, 20, proc)

  local issuer = "http://127.0.0.1:" .. port
  local info = {
    port = port,
    url = issuer,
    issuer = issuer,
    log = proc.log,            -- the server's output: one line per token request, no secrets
    user = "tester",           -- the account every interaction logs in
    resource = issuer .. "/api", -- a resource indicator it accepts (so is "urn:connkit:api")
    endpoints = {
      discovery = issuer .. "/.well-known/openid-configuration",
      authorization = issuer .. "/auth",
      token = issuer .. "/token",
      revocation = issuer .. "/token/revocation",
      introspection = issuer .. "/token/introspection",
      device_authorization = issuer .. "/device/auth",
      verification = issuer .. "/device",
      userinfo = issuer .. "/me",
      jwks = issuer .. "/jwks",
      api = issuer .. "/api/me",          -- protected resource: 200 JSON or 401
      callback = issuer .. "/test/callback", -- a redirect_uri sink that echoes its query
    },
    clients = {
      basic = { id = "basic-client", secret = "p@ss:w%rd+&/ ~", auth = "basic",
        redirect_uris = { issuer .. "/test/callback", "http://127.0.0.1:8765/callback" } },
      post = { id = "post-client", secret = "post:s3cret&=+%", auth = "post",
        redirect_uris = { issuer .. "/test/callback", "http://127.0.0.1:8765/callback" } },
      public = { id = "public-client", auth = "none", pkce_required = true,
        redirect_uris = { "http://127.0.0.1/callback" } }, -- any port (RFC 8252 loopback)
      cc = { id = "cc-client", secret = "cc:s3cret/+ %", auth = "basic" },
    },
  }

  local function url(path) return issuer .. path end

  --- GET a test route; decoded JSON or nil, message.
  function info.get(path) return http.get_json(helpers, url(path)) end
  --- POST a form to a test route; decoded JSON or nil, message.
  function info.post(path, form) return http.post_json(helpers, url(path), form) end

  --- Counters: token{total, ok, error, by_grant_type{[gt]={total,ok,error}}},
  -- device_authorization, revocation, introspection, authorization, api{total, ok, unauthorized}.
  function info.stats() return assert(info.get("/test/stats")) end
  --- Clears counters and logs and restores the start-up config.
  function info.reset() return assert(info.post("/test/reset")) end
  --- Every token request since the last reset, oldest first (no secrets:
  -- refresh_token_sha256, code_sha256, issued_*_sha256, params, client_auth, ...).
  function info.token_requests() return assert(info.get("/test/token-requests")) end
  --- Every /api/me request since the last reset (headers without Authorization).
  function info.api_requests() return assert(info.get("/test/api-requests")) end
  --- sha256 hex of a value, as the server logs it.
  function info.sha256(value) return assert(info.post("/test/hash", { value = value })).sha256 end
  --- Changes settings at run time: access_ttl, cc_ttl, refresh_ttl, device_ttl,
  -- device_interval, rotate (bool), slow_down (n). Returns the new config.
  function info.config(t)
    local form = {}
    for k, v in pairs(t or {}) do form[k] = tostring(v) end
    return assert(info.post("/test/config", form))
  end
  --- Drops an access token server-side; true when it existed.
  function info.invalidate(token)
    local r = info.post("/test/invalidate", { token = token })
    return r ~= nil and r.invalidated == true
  end
  --- { active = bool, kind = ..., client_id = ... } for any token, no client auth needed.
  function info.introspect(token) return assert(info.post("/test/introspect", { token = token })) end
  --- Approves / denies a pending device code by user code; true on success.
  function info.approve(user_code)
    local r = info.post("/test/device/approve", { user_code = user_code })
    return r ~= nil and r.ok == true, r
  end
  function info.deny(user_code)
    local r = info.post("/test/device/deny", { user_code = user_code })
    return r ~= nil and r.ok == true, r
  end
  --- The next authorization interaction answers error=access_denied.
  function info.deny_next() return assert(info.post("/test/interaction", { mode = "deny" })) end

  --- Drives an authorization URL headless like a browser would (cookies kept
  -- in `opts.jar` or a fresh jar) and returns the final redirect to the
  -- client's redirect_uri WITHOUT requesting it: the callback URL with
  -- code, state and iss (or error). Nothing need listen on the redirect_uri.
  function info.authorize(auth_url, opts)
    opts = opts or {}
    local jar = opts.jar or os.tmpname()
    local q = helpers.shell_quote
    local prefix = issuer .. "/"
    local result, err
    local u = auth_url
    for hop = 1, 15 do
      local ok, out = helpers.run(("curl -sS -g --max-time 10 -o /dev/null -c %s -b %s -w %s %s")
        :format(q(jar), q(jar), q("%{http_code} %{redirect_url}"), q(u)))
      local status, loc = (out or ""):match("(%d%d%d) (%S*)%s*$")
      if not ok or not status then err = "curl failed: " .. tostring(out) break end
      if loc == "" then
        err = ("authorization stopped with HTTP %s at hop %d (%s)"):format(status, hop, u) break
      end
      if loc:sub(1, #prefix) ~= prefix or loc:sub(1, #info.endpoints.callback) == info.endpoints.callback then
        result = loc break
      end
      u = loc
    end
    if not opts.jar then os.remove(jar) end
    if result then return result end
    return nil, err or "too many redirects"
  end

  --- Starts a background "browser" (curl -L with a cookie jar) that follows
  -- auth_url all the way INTO the redirect_uri, e.g. a loopback listener of
  -- account:login(). Returns the process; helpers.stop(proc) when done.
  function info.browse(auth_url)
    local jar = os.tmpname()
    local q = helpers.shell_quote
    return helpers.spawn("browser", ("curl -sS -g -L --max-redirs 15 --max-time 30 -c %s -b %s -o /dev/null %s; rm -f %s")
      :format(q(jar), q(jar), q(auth_url), q(jar)))
  end

  local extras = {}
  --- Starts another, private instance with other start-up settings
  -- (access_ttl, cc_ttl, refresh_ttl, device_ttl, device_interval; env =
  -- { NAME = value } for the extensions in spec/oidc/ext). Stop it
  -- with its stop(); it is also stopped with the shared one.
  function info.new(o)
    local other = start(helpers, o)
    extras[#extras + 1] = other
    return other
  end

  function info.stop()
    for _, e in ipairs(extras) do e.stop() end
    helpers.stop(proc)
  end
  return info
end

return function(helpers) return start(helpers) end
