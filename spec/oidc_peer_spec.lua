-- The OAuth test peers work, proven with the curl command line only (valid
-- before connkit's OAuth client exists): oidc-provider (spec/oidc) and the
-- scripted misbehaving server (spec/scripted). Secrets are compared with
-- is_true(a == b) so that a failure never prints one.
local helpers = require "helpers"
local http = require "scripted.http"
local socket = require "socket"

local GT_DEVICE = "urn:ietf:params:oauth:grant-type:device_code"

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for j = 3, 0, -1 do
      local k = math.floor(n / 64 ^ j) % 64
      chars[#chars + 1] = B64:sub(k + 1, k + 1)
    end
    if not b then chars[3], chars[4] = "=", "="
    elseif not c then chars[4] = "=" end
    out[#out + 1] = table.concat(chars)
  end
  return table.concat(out)
end

-- RFC 6749 2.3.1: id and secret form-urlencoded, then base64.
local function basic(client)
  local enc = function(s) return (http.urlencode(s):gsub("%%20", "+")) end
  return "Basic " .. base64(enc(client.id) .. ":" .. enc(client.secret))
end

local function s256(verifier)
  local ok, out = helpers.run("printf %s " .. helpers.shell_quote(verifier) ..
    " | openssl dgst -sha256 -binary | openssl base64 -A")
  assert(ok, out)
  return (out:gsub("%s", ""):gsub("%+", "-"):gsub("/", "_"):gsub("=", ""))
end

local function query_of(url)
  local t = {}
  for k, v in (url:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do
    t[k] = v:gsub("%+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  end
  return t
end

local function authorize_url(op, client_id, redirect_uri, extra)
  local p = { response_type = "code", client_id = client_id, redirect_uri = redirect_uri,
    scope = "read write", state = "st-" .. math.random(1e9) }
  for k, v in pairs(extra or {}) do p[k] = v end
  return op.endpoints.authorization .. "?" .. http.form(p), p
end

-- POST to the token endpoint; client.auth decides where the credentials go.
local function token_request(op, client, form, endpoint)
  local headers = {}
  if client.auth == "basic" then headers.Authorization = basic(client)
  else
    form.client_id = client.id
    if client.auth == "post" then form.client_secret = client.secret end
  end
  local status, _, json = http.request(helpers, "POST", endpoint or op.endpoints.token,
    { form = form, headers = headers })
  return status, json or {}
end

-- A full authorization-code flow: code + PKCE, exchanged; returns the token reply.
local function code_flow(op, client, redirect_uri)
  local verifier = ("v"):rep(10) .. tostring(math.random(1e9)) .. ("x"):rep(40)
  local url, p = authorize_url(op, client.id, redirect_uri,
    { code_challenge = s256(verifier), code_challenge_method = "S256" })
  local cb = assert(op.authorize(url))
  local q = query_of(cb)
  assert.equal(p.state, q.state)
  assert.equal(op.issuer, q.iss)
  assert.truthy(q.code)
  local status, tok = token_request(op, client, { grant_type = "authorization_code", code = q.code,
    redirect_uri = redirect_uri, code_verifier = verifier })
  assert.equal(200, status)
  return tok
end

local function api(op, token)
  local status, _, json = http.request(helpers, "GET", op.endpoints.api,
    { headers = { Authorization = "Bearer " .. token } })
  return status, json
end

describe("oidc peer", function()
  local op
  setup(function()
    op = helpers.peer("oidc")
  end)
  before_each(function()
    op.reset()
  end)

  it("publishes its metadata with the iss response parameter (RFC 9207)", function()
    local meta = assert(http.get_json(helpers, op.endpoints.discovery))
    assert.equal(op.issuer, meta.issuer)
    assert.equal(op.endpoints.token, meta.token_endpoint)
    assert.equal(op.endpoints.revocation, meta.revocation_endpoint)
    assert.equal(op.endpoints.device_authorization, meta.device_authorization_endpoint)
    assert.is_true(meta.authorization_response_iss_parameter_supported)
  end)

  it("runs the authorization-code flow headless and exchanges the code (client_secret_basic)", function()
    local c = op.clients.basic
    local tok = code_flow(op, c, op.endpoints.callback)
    assert.is_string(tok.access_token)
    assert.is_string(tok.refresh_token)
    assert.equal("Bearer", tok.token_type)
    assert.equal(3600, tok.expires_in)
    local log = op.token_requests()
    assert.equal(1, #log)
    assert.equal("authorization_code", log[1].grant_type)
    assert.equal("basic", log[1].client_auth)
    assert.equal(c.id, log[1].client_id)
    assert.equal(op.endpoints.callback, log[1].redirect_uri)
    assert.is_true(log[1].code_verifier_length >= 43)
    assert.equal(200, (api(op, tok.access_token)))
  end)

  it("refuses a wrong basic secret", function()
    local status, tok = token_request(op, { id = "basic-client", secret = "wrong", auth = "basic" },
      { grant_type = "refresh_token", refresh_token = "x" })
    assert.equal(401, status)
    assert.equal("invalid_client", tok.error)
  end)

  it("exchanges a code with a client_secret_post client on a fixed loopback redirect", function()
    local tok = code_flow(op, op.clients.post, "http://127.0.0.1:8765/callback")
    assert.is_string(tok.access_token)
    local log = op.token_requests()
    assert.equal("post", log[1].client_auth)
    assert.same({ "client_id", "client_secret", "code", "code_verifier", "grant_type", "redirect_uri" }, log[1].params)
  end)

  it("accepts any loopback port for the public client and requires PKCE", function()
    local c = op.clients.public
    local redirect = ("http://127.0.0.1:%d/callback"):format(helpers.free_port())
    local tok = code_flow(op, c, redirect)
    assert.is_string(tok.refresh_token)
    assert.equal("none", op.token_requests()[1].client_auth)
    -- without PKCE the server answers with an error on the redirect
    local url = authorize_url(op, c.id, redirect)
    local q = query_of(assert(op.authorize(url)))
    assert.equal("invalid_request", q.error)
    assert.is_nil(q.code)
  end)

  it("browses an authorization URL into a loopback listener (login helper)", function()
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    server:settimeout(10)
    local url, p = authorize_url(op, op.clients.public.id, ("http://127.0.0.1:%d/callback"):format(port),
      { code_challenge = s256(("k"):rep(43)), code_challenge_method = "S256" })
    local browser = op.browse(url)
    local conn = assert(server:accept())
    conn:settimeout(5)
    local line = assert(conn:receive("*l"))
    conn:send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    conn:close()
    server:close()
    helpers.stop(browser)
    local target = line:match("^GET (%S+) HTTP/1%.1$")
    assert.truthy(target)
    local q = query_of(target)
    assert.equal(p.state, q.state)
    assert.truthy(q.code)
    assert.equal(op.issuer, q.iss)
  end)

  it("answers access_denied when told to deny the next interaction", function()
    op.deny_next()
    local url, p = authorize_url(op, op.clients.basic.id, op.endpoints.callback)
    local q = query_of(assert(op.authorize(url)))
    assert.equal("access_denied", q.error)
    assert.equal(p.state, q.state)
    assert.equal(op.issuer, q.iss)
  end)

  it("issues client-credentials tokens and records extra parameters", function()
    local c = op.clients.cc
    local status, tok = token_request(op, c, { grant_type = "client_credentials", scope = "read", audience = "eu-api" })
    assert.equal(200, status)
    assert.is_nil(tok.refresh_token)
    local s, me = api(op, tok.access_token)
    assert.equal(200, s)
    assert.equal("client_credentials", me.kind)
    assert.equal(c.id, me.client_id)
    local log = op.token_requests()
    assert.equal("eu-api", log[1].audience)
    assert.equal("basic", log[1].client_auth)
    -- with a resource indicator too
    status = token_request(op, c, { grant_type = "client_credentials", resource = op.resource })
    assert.equal(200, status)
  end)

  it("rotates refresh tokens and revokes the grant when an old one is reused", function()
    local c = op.clients.basic
    local tok = code_flow(op, c, op.endpoints.callback)
    local status, tok2 = token_request(op, c, { grant_type = "refresh_token", refresh_token = tok.refresh_token })
    assert.equal(200, status)
    assert.is_true(tok2.refresh_token ~= nil and tok2.refresh_token ~= tok.refresh_token)
    assert.equal(200, (api(op, tok2.access_token)))
    -- reuse of the first refresh token: refused, and the whole grant is gone
    local status3, tok3 = token_request(op, c, { grant_type = "refresh_token", refresh_token = tok.refresh_token })
    assert.equal(400, status3)
    assert.equal("invalid_grant", tok3.error)
    local status4 = token_request(op, c, { grant_type = "refresh_token", refresh_token = tok2.refresh_token })
    assert.equal(400, status4)
    assert.equal(401, (api(op, tok2.access_token)))
    local log = op.token_requests()
    assert.equal(4, #log)
    assert.equal("refresh token already used", log[3].error_detail)
    assert.equal(op.sha256(tok.refresh_token), log[2].refresh_token_sha256)
    assert.equal(log[1].issued_refresh_token_sha256, log[3].refresh_token_sha256)
    local st = op.stats()
    assert.same({ total = 3, ok = 1, error = 2 }, st.token.by_grant_type.refresh_token)
    assert.same({ total = 1, ok = 1, error = 0 }, st.token.by_grant_type.authorization_code)
    assert.equal(4, st.token.total)
  end)

  it("serves /api/me until the token is invalidated, then 401 with WWW-Authenticate", function()
    local tok = code_flow(op, op.clients.basic, op.endpoints.callback)
    local status, me = api(op, tok.access_token)
    assert.equal(200, status)
    assert.equal(op.user, me.sub)
    assert.is_true(op.invalidate(tok.access_token))
    local s, body = http.request(helpers, "GET", op.endpoints.api,
      { headers = { Authorization = "Bearer " .. tok.access_token } })
    assert.equal(401, s)
    assert.matches("invalid_token", body)
    local ok, head = helpers.run("curl -sS -o /dev/null -D - " .. helpers.shell_quote(op.endpoints.api))
    assert.is_true(ok)
    assert.matches('[Ww]ww%-[Aa]uthenticate: Bearer realm="connkit%-test"', head)
    local st = op.stats()
    assert.equal(1, st.api.ok)
    assert.equal(2, st.api.unauthorized)
  end)

  it("revokes a refresh token (RFC 7009) and the server then rejects it", function()
    local c = op.clients.basic
    local tok = code_flow(op, c, op.endpoints.callback)
    assert.is_true(op.introspect(tok.refresh_token).active)
    local status = http.request(helpers, "POST", op.endpoints.revocation, { headers = { Authorization = basic(c) },
      form = { token = tok.refresh_token, token_type_hint = "refresh_token" } })
    assert.equal(200, status)
    assert.is_false(op.introspect(tok.refresh_token).active)
    local s2 = token_request(op, c, { grant_type = "refresh_token", refresh_token = tok.refresh_token })
    assert.equal(400, s2)
    assert.equal(1, op.stats().revocation)
  end)

  it("expires access tokens after a short configured lifetime", function()
    op.config({ access_ttl = 1 })
    local tok = code_flow(op, op.clients.public, "http://127.0.0.1:9/callback")
    assert.equal(1, tok.expires_in)
    socket.sleep(1.1) -- exp = iat + 1, whole seconds
    assert.equal(401, (api(op, tok.access_token)))
    op.config({ access_ttl = 60 }) -- a 1 s token may expire before its first use
    local status, tok2 = token_request(op, op.clients.public, { grant_type = "refresh_token", refresh_token = tok.refresh_token })
    assert.equal(200, status)
    assert.equal(200, (api(op, tok2.access_token)))
  end)

  describe("device flow", function()
    local function start(client)
      local status, d = token_request(op, client, { scope = "read" }, op.endpoints.device_authorization)
      assert.equal(200, status)
      assert.equal(op.endpoints.verification, d.verification_uri)
      assert.equal(1, d.interval)
      return d
    end
    local function poll(client, d)
      return token_request(op, client, { grant_type = GT_DEVICE, device_code = d.device_code })
    end

    it("is pending, then approved headless", function()
      local c = op.clients.public
      local d = start(c)
      local s1, r1 = poll(c, d)
      assert.equal(400, s1)
      assert.equal("authorization_pending", r1.error)
      assert.is_true((op.approve(d.user_code)))
      local s2, r2 = poll(c, d)
      assert.equal(200, s2)
      assert.equal("read", r2.scope)
      assert.is_string(r2.refresh_token)
      assert.equal(200, (api(op, r2.access_token)))
      assert.same({ total = 2, ok = 1, error = 1 }, op.stats().token.by_grant_type[GT_DEVICE])
    end)

    it("is denied headless", function()
      local c = op.clients.public
      local d = start(c)
      assert.is_true((op.deny(d.user_code)))
      local s, r = poll(c, d)
      assert.equal(400, s)
      assert.equal("access_denied", r.error)
      assert.is_false((op.approve(d.user_code)))
    end)

    it("answers slow_down when asked to", function()
      local c = op.clients.basic
      op.config({ slow_down = 1 })
      local d = start(c)
      local _, r1 = poll(c, d)
      assert.equal("slow_down", r1.error)
      local _, r2 = poll(c, d)
      assert.equal("authorization_pending", r2.error)
    end)
  end)
end)

describe("scripted peer", function()
  local sp
  setup(function()
    sp = helpers.peer("scripted")
  end)
  before_each(function()
    sp.reset()
  end)

  it("records what it received", function()
    local status, _, json = sp.request("POST", "/token/string-expires?x=1",
      { form = { grant_type = "client_credentials", audience = "eu" }, headers = { ["X-Test"] = "yes" } })
    assert.equal(200, status)
    assert.equal("3600", json.expires_in)
    local last = sp.last("/token/string-expires")
    assert.equal("POST", last.method)
    assert.equal("1", last.query.x)
    assert.equal("yes", last.headers["x-test"])
    assert.equal("eu", last.form.audience)
    assert.equal("audience=eu&grant_type=client_credentials", last.body)
  end)

  it("misbehaves as asked", function()
    local s, body, _, _ = sp.request("POST", "/token/html503")
    assert.equal(503, s)
    assert.matches("<html>", body)
    local _, _, j = sp.request("POST", "/token/no-expires")
    assert.is_nil(j.expires_in)
    assert.is_string(j.access_token)
    _, _, j = sp.request("POST", "/token/expires-at?ttl=60")
    assert.is_true(math.abs(j.expires_at - os.time() - 60) <= 2)
    _, _, j = sp.request("POST", "/token/error200")
    assert.equal("invalid_grant", j.error)
    _, body = sp.request("POST", "/token/form")
    assert.matches("^access_token=", body)
    s, body = sp.request("POST", "/token/empty")
    assert.equal(200, s)
    assert.equal("", body)
    local _, _, _, err = sp.request("POST", "/token/reset")
    assert.truthy(err)
  end)

  it("validates custom-token logins and the tokens it issued", function()
    local s, _, j = sp.request("POST", "/login", { form = { user = sp.login.user, password = sp.login.password } })
    assert.equal(200, s)
    assert.equal("600", j.data.ttl)
    local tok = j.data.token
    s = sp.request("POST", "/login", { form = { user = sp.login.user, password = "nope" } })
    assert.equal(401, s)
    assert.equal(200, (sp.request("GET", "/resource", { headers = { Authorization = "Bearer " .. tok } })))
    sp.invalidate_all()
    assert.equal(401, (sp.request("GET", "/resource", { headers = { Authorization = "Bearer " .. tok } })))
  end)

  it("fails twice then succeeds, and rate-limits with Retry-After, counting attempts", function()
    assert.equal(503, (sp.request("GET", "/flaky?key=k1")))
    assert.equal(503, (sp.request("GET", "/flaky?key=k1")))
    local s, _, j = sp.request("GET", "/flaky?key=k1")
    assert.equal(200, s)
    assert.equal(3, j.attempt)
    assert.equal(3, sp.attempts("k1"))
    local ok, head = helpers.run("curl -sS -o /dev/null -D - " .. helpers.shell_quote(sp.url .. "/ratelimit?key=r1&retry_after=7"))
    assert.is_true(ok)
    assert.matches("HTTP/1.1 429", head)
    assert.matches("[Rr]etry%-[Aa]fter: 7", head)
    assert.equal(200, (sp.request("GET", "/ratelimit?key=r1")))
    assert.equal(2, sp.attempts("r1"))
  end)

  it("has a listener that never answers", function()
    local t0 = socket.gettime()
    local s, _, _, err = http.request(helpers, "GET", sp.hang_url .. "/", { timeout = 0.5 })
    assert.equal(0, s)
    assert.matches("[Tt]imed? ?out", err)
    assert.is_true(socket.gettime() - t0 < 2)
    s, _, _, err = sp.request("GET", "/hang", { timeout = 0.5 })
    assert.equal(0, s)
    assert.truthy(err)
  end)
end)
