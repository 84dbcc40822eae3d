-- OAuth 2.0 against a real authorization server (oidc-provider): the
-- authorization code grant with PKCE (basic, post and public clients),
-- state/iss/error checks, refresh with rotation, forced 401, invalid_grant,
-- revocation, client credentials, loopback login and the device flow.
local helpers = require "helpers"
local connkit = require "connkit"
local socket = require "socket"

local op

local function integration(client, extra)
  local c = op.clients[client]
  local o = {
    grant_type = "authorization_code",
    token_url = "{issuer}/token",
    authorize_url = "{issuer}/auth",
    revoke_url = "{issuer}/token/revocation",
    device_authorization_url = "{issuer}/device/auth",
    issuer = "{issuer}",
    scope = "openid offline_access api:read",
    client_id = c.id,
    client_secret = c.secret,
    client_auth = c.auth,
    extra_params = { resource = "{issuer}/api" },
    authorize_params = { resource = "{issuer}/api" },
  }
  for k, v in pairs(extra or {}) do o[k] = v end
  return connkit.integration {
    name = "Test IdP " .. client, key = "idp" .. client:gsub("%W", ""), auth = "oauth2",
    base_url = "{issuer}", parameters = { issuer = { required = true } },
    oauth2 = o,
  }
end

local function authorized_account(client, opts)
  opts = opts or {}
  local acct = integration(client, opts.oauth2):account { id = opts.id or client, parameters = { issuer = op.issuer },
    on_token = opts.on_token, store = opts.store }
  local url = acct:authorize_url { redirect_uri = op.endpoints.callback }
  local cb = assert(op.authorize(url))
  assert(acct:finish_authorization(cb))
  return acct
end

local function grant_count(gt)
  local s = op.stats().token.by_grant_type[gt]
  return s and s.total or 0
end

describe("oauth2 authorization code", function()
  setup(function() op = helpers.peer("oidc") end)
  before_each(function() op.reset() end)

  for _, client in ipairs({ "basic", "post" }) do
    it("completes with PKCE S256 and a " .. client .. " client", function()
      local acct = integration(client):account { parameters = { issuer = op.issuer } }
      local url = acct:authorize_url { redirect_uri = op.endpoints.callback }
      local q = url:match("%?(.*)$")
      assert.matches("code_challenge_method=S256", q, 1, true)
      local challenge = q:match("code_challenge=([%w%-_]+)")
      assert.is_true(#challenge == 43)
      local state = q:match("state=([%w%-_]+)")
      assert.is_true(#state >= 22)
      assert.matches("redirect_uri=" .. require("connkit.core").escape(op.endpoints.callback, "query"), q, 1, true)

      local cb = assert(op.authorize(url))
      assert(acct:finish_authorization(cb))
      local st = acct:status()
      assert.is_true(st.authorized)
      assert.is_true(st.has_refresh_token)
      assert.is_true(st.expires_in > 3000)

      -- what the token endpoint received
      local reqs = op.token_requests()
      local last = reqs[#reqs]
      assert.equal("authorization_code", last.grant_type)
      assert.equal(client, last.client_auth)
      assert.equal(op.endpoints.callback, last.redirect_uri)
      assert.is_true(last.code_verifier_length >= 43 and last.code_verifier_length <= 128)

      local res = assert(acct:get("/api/me"))
      assert.equal(200, res.status)
      assert.equal("tester", res:json().sub)
      assert.equal("header", res:json().via)
    end)
  end

  it("sends no PKCE challenge when pkce = false", function()
    local acct = integration("basic", { pkce = false }):account { parameters = { issuer = op.issuer } }
    local url = acct:authorize_url { redirect_uri = op.endpoints.callback }
    assert.not_matches("code_challenge", url, 1, true)
    assert(acct:finish_authorization(assert(op.authorize(url))))
    local reqs = op.token_requests()
    assert.equal(200, reqs[#reqs].status)
    assert.is_nil(reqs[#reqs].code_verifier_length)
  end)

  it("refuses a missing, wrong or replayed state before any token request", function()
    local acct = integration("basic"):account { parameters = { issuer = op.issuer } }
    local cb = assert(op.authorize(acct:authorize_url { redirect_uri = op.endpoints.callback }))
    local before = op.stats().token.total
    for _, bad in ipairs({
      (cb:gsub("state=[^&]*", "state=forged")),
      (cb:gsub("&?state=[^&]*", "")),
      (cb:gsub("(state=[^&]*)", "%1&%1")),
    }) do
      local ok, err = acct:finish_authorization(bad)
      assert.is_nil(ok)
      assert.equal("state_mismatch", err.code)
    end
    assert(acct:finish_authorization(cb))
    local ok, err = acct:finish_authorization(cb) -- replay
    assert.is_nil(ok)
    assert.equal("state_mismatch", err.code)
    assert.equal(before + 1, op.stats().token.total)
  end)

  it("reports an error= response with the server's code", function()
    local acct = integration("basic"):account { parameters = { issuer = op.issuer } }
    op.deny_next()
    local cb = assert(op.authorize(acct:authorize_url { redirect_uri = op.endpoints.callback }))
    assert.matches("error=access_denied", cb, 1, true)
    local ok, err = acct:finish_authorization(cb)
    assert.is_nil(ok)
    assert.equal("access_denied", err.code)
    assert.equal(0, op.stats().token.total)
  end)

  it("checks iss (RFC 9207) and refuses a duplicated code", function()
    local acct = integration("basic"):account { parameters = { issuer = op.issuer } }
    local cb = assert(op.authorize(acct:authorize_url { redirect_uri = op.endpoints.callback }))
    assert.matches("iss=", cb, 1, true)
    local other = "iss=" .. require("connkit.core").escape("http://127.0.0.1:1", "query")
    local forged = cb:gsub("iss=[^&]*", function() return other end)
    local ok, err = acct:finish_authorization(forged)
    assert.is_nil(ok)
    assert.equal("issuer_mismatch", err.code)

    cb = assert(op.authorize(acct:authorize_url { redirect_uri = op.endpoints.callback }))
    ok, err = acct:finish_authorization(cb:gsub("(code=[^&]*)", "%1&%1"))
    assert.is_nil(ok)
    assert.equal("invalid_request", err.code)
    assert.equal(0, op.stats().token.total)
  end)

  it("rotates refresh tokens and never uses an old one again", function()
    local acct = authorized_account("basic")
    local tokens = { assert(acct:token()) }
    for i = 1, 3 do
      assert(acct:refresh())
      tokens[#tokens + 1] = assert(acct:token())
      assert.are_not.equal(tokens[i], tokens[i + 1])
    end
    local used, issued = {}, {}
    for _, r in ipairs(op.token_requests()) do
      if r.grant_type == "refresh_token" then
        assert.equal(200, r.status)
        assert.is_nil(used[r.refresh_token_sha256], "a refresh token was used twice")
        used[r.refresh_token_sha256] = true
      end
      if r.issued_refresh_token_sha256 then issued[#issued + 1] = r.issued_refresh_token_sha256 end
    end
    assert.equal(3, grant_count("refresh_token"))
    -- each refresh used the token issued just before it
    local n = 0
    for _, r in ipairs(op.token_requests()) do
      if r.grant_type == "refresh_token" then
        n = n + 1
        assert.equal(issued[n], r.refresh_token_sha256)
      end
    end
    assert.equal(200, assert(acct:get("/api/me")).status)
  end)

  it("on a 401 refreshes once, retries once, and succeeds", function()
    local acct = authorized_account("basic")
    local old = assert(acct:token())
    assert.is_true(op.invalidate(old))
    local res = assert(acct:get("/api/me"))
    assert.equal(200, res.status)
    assert.equal(1, grant_count("refresh_token"))
    local api = op.stats().api
    assert.equal(1, api.unauthorized)
    assert.equal(1, api.ok)
    assert.are_not.equal(old, acct:token())
  end)

  it("turns invalid_grant on refresh into reauthorize, keeping the account usable", function()
    local acct = authorized_account("basic")
    local token = assert(acct:token())
    -- the server forgets the grant behind the refresh token
    local rt = acct._tok.refresh_token
    local res = assert(helpers.run(("curl -s -u %s -d token=%s -d token_type_hint=refresh_token %s"):format(
      helpers.shell_quote(op.clients.basic.id .. ":" .. require("connkit.core").escape(op.clients.basic.secret, "form")),
      helpers.shell_quote(rt), helpers.shell_quote(op.endpoints.revocation))))
    assert.is_true(res)
    local ok, err = acct:refresh()
    assert.is_nil(ok)
    assert.equal("reauthorize", err.code)
    assert.equal(1, grant_count("refresh_token"))
    assert.not_matches(rt, err.message, 1, true)
    -- the access token is kept: the account still works until it expires
    assert.equal(token, acct:token())
    assert.is_true(acct:status().authorized)
  end)

  it("revokes at the server and drops the local tokens", function()
    local acct = authorized_account("basic")
    local token = assert(acct:token())
    local rt = acct._tok.refresh_token
    assert.is_true(op.introspect(rt).active)
    assert(acct:revoke())
    assert.is_false(op.introspect(rt).active)
    assert.equal(1, op.stats().revocation)
    assert.is_false(acct:status().authorized)
    local t, err = acct:token()
    assert.is_nil(t)
    assert.equal("reauthorize", err.code)
    assert.is_string(token)
  end)

  it("drops the local tokens even when the revocation call fails", function()
    local acct = authorized_account("basic", {
      oauth2 = { revoke_url = "http://127.0.0.1:" .. helpers.free_port() .. "/revoke" }, id = "revfail" })
    local ok, err = acct:revoke()
    assert.is_nil(ok)
    assert.equal("connect", err.code)
    assert.is_false(acct:status().authorized)
  end)

  it("calls on_token with no secret", function()
    local seen = {}
    local acct = authorized_account("basic", { on_token = function(a, info) seen[#seen + 1] = { a = a, info = info } end })
    assert.equal(1, #seen)
    assert.equal(acct, seen[1].a)
    local token = assert(acct:token())
    for k, v in pairs(seen[1].info) do
      assert.is_true(k ~= "access_token" and k ~= "refresh_token")
      assert.is_true(v ~= token)
    end
    assert.is_true(seen[1].info.expires_in > 0)
  end)
end)

describe("oauth2 client credentials", function()
  setup(function() op = helpers.peer("oidc") end)
  before_each(function() op.reset() end)

  local function cc_account(server, extra)
    return connkit.integration {
      name = "CC", key = "cc", auth = "oauth2", base_url = "{issuer}",
      parameters = { issuer = { required = true }, audience = { default = "api" } },
      oauth2 = {
        grant_type = "client_credentials", token_url = "{issuer}/token",
        client_id = op.clients.cc.id, client_secret = op.clients.cc.secret, scope = "api:read",
        extra_params = { resource = "{issuer}/api" },
      },
      refresh = extra,
    }:account { parameters = { issuer = server.issuer } }
  end

  it("fetches on first use with extra_params, then reuses the token", function()
    local acct = cc_account(op)
    for _ = 1, 3 do assert.equal(200, assert(acct:get("/api/me")).status) end
    local reqs = op.token_requests()
    assert.equal(1, #reqs)
    assert.equal("client_credentials", reqs[1].grant_type)
    assert.equal(op.issuer .. "/api", reqs[1].resource)
    assert.equal("api:read", reqs[1].scope)
    assert.equal("basic", reqs[1].client_auth)
    assert.equal("client_credentials", assert(acct:get("/api/me")):json().kind)
  end)

  it("fetches again when a short token is half spent, not on every call", function()
    local short = op.new { cc_ttl = 4 }
    local acct = cc_account(short)
    local t0 = socket.gettime()
    local n = 0
    while socket.gettime() - t0 < 3.2 do
      assert.equal(200, assert(acct:get("/api/me")).status)
      n = n + 1
      socket.sleep(0.2)
    end
    assert.is_true(n >= 10)
    local cc = short.stats().token.by_grant_type.client_credentials.total
    assert.is_true(cc == 2, "token requests: " .. cc)
    short.stop()
  end)
end)

describe("oauth2 loopback login", function()
  setup(function() op = helpers.peer("oidc") end)

  local function public_account(id)
    return connkit.integration {
      name = "Public", key = "pub", auth = "oauth2", base_url = "{issuer}", parameters = { issuer = { required = true } },
      oauth2 = {
        token_url = "{issuer}/token", authorize_url = "{issuer}/auth", issuer = "{issuer}",
        client_id = op.clients.public.id, client_auth = "none", scope = "openid offline_access",
        extra_params = { resource = "{issuer}/api" }, authorize_params = { resource = "{issuer}/api" },
      },
    }:account { id = id, parameters = { issuer = op.issuer } }
  end

  it("takes one callback on 127.0.0.1 and finishes with a public client", function()
    local acct = public_account("login1")
    local browser
    local ok, err = acct:login { port = 0, timeout = 20, on_url = function(url)
      assert.matches("redirect_uri=http%%3A%%2F%%2F127%.0%.0%.1%%3A%d+%%2Fcallback", url)
      browser = op.browse(url)
    end }
    helpers.stop(browser)
    assert.is_nil(err)
    assert.is_true(ok)
    assert.is_true(acct:status().has_refresh_token)
    assert.equal(200, assert(acct:get("/api/me")).status)
  end)

  it("gives up with timeout and closes the port", function()
    local acct = public_account("login2")
    local port
    local t0 = socket.gettime()
    local ok, err = acct:login { timeout = 0.5, on_url = function(url)
      port = tonumber(url:match("127.0.0.1%%3A(%d+)"))
    end }
    assert.is_nil(ok)
    assert.equal("timeout", err.code)
    assert.is_true(socket.gettime() - t0 < 2)
    local c = socket.tcp()
    c:settimeout(0.5)
    assert.is_nil(c:connect("127.0.0.1", port))
    c:close()
  end)

  it("ignores a callback with the wrong state and waits for the right one", function()
    local acct = public_account("login3")
    local forger, browser
    local ok, err = acct:login { timeout = 20, on_url = function(url)
      local port = url:match("127.0.0.1%%3A(%d+)")
      -- the forged callback first; the real browser a moment later
      forger = helpers.spawn("forger", "curl -s -o /dev/null -w 'status=%{http_code}' --max-time 10 "
        .. "'http://127.0.0.1:" .. port .. "/callback?code=x&state=forged'")
      browser = op.browse(url) -- takes several hops before it reaches the listener
    end }
    assert.is_nil(err)
    assert.is_true(ok)
    helpers.stop(browser)
    for _ = 1, 50 do
      if not helpers.alive(forger.pid) then break end
      socket.sleep(0.05)
    end
    assert.equal("status=400", helpers.read_file(forger.log))
  end)
end)

describe("oauth2 device flow", function()
  setup(function() op = helpers.peer("oidc") end)
  before_each(function() op.reset() end)

  local function device_account()
    return connkit.integration {
      name = "Device", key = "dev", auth = "oauth2", base_url = "{issuer}", parameters = { issuer = { required = true } },
      oauth2 = {
        token_url = "{issuer}/token", authorize_url = "{issuer}/auth", device_authorization_url = "{issuer}/device/auth",
        client_id = op.clients.public.id, client_auth = "none", scope = "openid offline_access",
      },
    }:account { parameters = { issuer = op.issuer } }
  end

  it("polls until the user approves", function()
    local acct = device_account()
    local shown
    local ok, err = acct:login_device { timeout = 30, on_code = function(uri, code, info)
      shown = { uri = uri, code = code, info = info }
      assert(op.approve(code))
    end }
    assert.is_nil(err)
    assert.is_true(ok)
    assert.equal(op.endpoints.verification, shown.uri)
    assert.is_string(shown.code)
    assert.equal(200, assert(acct:get("/api/me")).status)
  end)

  it("stops when the user denies", function()
    local acct = device_account()
    local ok, err = acct:login_device { timeout = 30, on_code = function(_, code) assert(op.deny(code)) end }
    assert.is_nil(ok)
    assert.equal("access_denied", err.code)
    assert.is_false(acct:status().authorized)
  end)

  it("waits 5 s more after slow_down", function()
    op.config { slow_down = 1 }
    local acct = device_account()
    local t0 = socket.gettime()
    local ok, err = acct:login_device { timeout = 30, on_code = function(_, code)
      -- approve only after the first (slowed-down) poll
      helpers.spawn("approver", "sh -c " .. helpers.shell_quote(("sleep 1.5; curl -s -d user_code=%s %s/test/device/approve")
        :format(helpers.shell_quote(code), op.issuer)))
    end }
    assert.is_nil(err)
    assert.is_true(ok)
    local took = socket.gettime() - t0
    assert.is_true(took >= 6 and took < 12, "took " .. took .. " s")
    local polls = 0
    for _, r in ipairs(op.token_requests()) do
      if r.grant_type == "urn:ietf:params:oauth:grant-type:device_code" then polls = polls + 1 end
    end
    assert.equal(2, polls)
  end)
end)
