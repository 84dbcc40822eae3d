-- Single-flight refresh across processes: 8 processes share one account
-- through the encrypted file store against oidc-provider with short-lived
-- access tokens and rotating refresh tokens. One token request per expiry,
-- counted on the server; no invalid_grant; no failed request.
local helpers = require "helpers"
local connkit = require "connkit"
local core = require "connkit.core"
local socket = require "socket"

describe("single-flight refresh across processes", function()
  it("makes one token request per expiry for 8 processes x 50 requests", function()
    local op = helpers.peer("oidc").new { access_ttl = 4 }
    local dir = helpers.tmpdir("sf")
    local key = core.b64encode(core.random(32))
    local integ = connkit.integration {
      name = "Shared", key = "shared", auth = "oauth2", base_url = "{issuer}",
      parameters = { issuer = { required = true } },
      oauth2 = {
        token_url = "{issuer}/token", authorize_url = "{issuer}/auth",
        client_id = "basic-client", client_secret = "p@ss:w%rd+&/ ~", scope = "openid offline_access",
      },
    }
    local acct = integ:account { id = "shared", parameters = { issuer = op.issuer },
      store = connkit.store.file(dir, { key = key }) }
    local url = acct:authorize_url { redirect_uri = op.endpoints.callback }
    assert(acct:finish_authorization(assert(op.authorize(url))))
    op.reset()

    local workers = {}
    local t0 = socket.gettime()
    for i = 1, 8 do
      workers[i] = helpers.spawn("worker" .. i, ("%s %s/spec/support/refresh_worker.lua %s %s %s 50 0.1"):format(
        helpers.lua, helpers.root, op.issuer, helpers.shell_quote(dir), helpers.shell_quote(key)), { env = helpers.child_env() })
    end
    for _, w in ipairs(workers) do
      for _ = 1, 600 do
        if not helpers.alive(w.pid) then break end
        socket.sleep(0.05)
      end
      assert.is_false(helpers.alive(w.pid), "a worker did not finish")
    end
    local elapsed = socket.gettime() - t0
    for i, w in ipairs(workers) do
      local out = helpers.read_file(w.log) or ""
      assert.matches("ok=50 fail=0", out, 1, true, "worker " .. i .. ": " .. out)
    end

    local refreshes, used, last_time = 0, {}, nil
    for _, r in ipairs(op.token_requests()) do
      assert.equal("refresh_token", r.grant_type)
      assert.equal(200, r.status, "token request failed: " .. tostring(r.error))
      assert.is_nil(used[r.refresh_token_sha256], "a refresh token was used twice")
      used[r.refresh_token_sha256] = true
      if last_time then
        -- one refresh per expiry: never two within one token's refresh period
        assert.is_true(r.time - last_time >= 1.5, ("refreshes %.2f s apart"):format(r.time - last_time))
      end
      last_time = r.time
      refreshes = refreshes + 1
    end
    -- a 4 s token is renewed when half its life is left: every ~2 s
    local expected = elapsed / 2
    assert.is_true(refreshes >= math.floor(expected) - 1 and refreshes <= math.ceil(expected) + 1,
      ("%d refreshes in %.1f s"):format(refreshes, elapsed))
    assert.equal(400, op.stats().api.ok)
    op.stop()
  end)
end)

describe("an account on a store it cannot read", function()
  local function files_of(dir)
    local out = {}
    for f in (select(2, helpers.run("ls " .. dir)) or ""):gmatch("[^\n]+") do out[f] = helpers.read_file(dir .. "/" .. f) end
    return out
  end

  it("client credentials: fetches a token of its own, says so, and leaves the record alone", function()
    local op = helpers.peer("oidc")
    local dir = helpers.tmpdir("sk")
    local key1, key2 = core.b64encode(core.random(32)), core.b64encode(core.random(32))
    local integ = connkit.integration {
      name = "K", key = "k", auth = "oauth2", base_url = "{issuer}", parameters = { issuer = { required = true } },
      oauth2 = { grant_type = "client_credentials", token_url = "{issuer}/token",
        client_id = op.clients.cc.id, client_secret = op.clients.cc.secret },
    }
    local a = integ:account { parameters = { issuer = op.issuer }, store = connkit.store.file(dir, { key = key1 }) }
    local ta = assert(a:token())
    assert.is_nil(a:status().store_error)
    local before = files_of(dir)
    op.reset()
    local seen = {}
    local b = integ:account { parameters = { issuer = op.issuer }, store = connkit.store.file(dir, { key = key2 }),
      on_token = function(_, info) seen[#seen + 1] = info end }
    -- said from the start, before any token is fetched
    assert.equal("store_auth", b:status().store_error.code)
    local tb = assert(b:token())
    assert.are_not.equal(ta, tb)
    assert.equal(1, op.stats().token.by_grant_type.client_credentials.ok)
    local st = b:status()
    assert.is_true(st.authorized)
    assert.equal("store_auth", st.store_error.code)
    assert.matches("does not authenticate", st.store_error.message)
    assert.equal("store_auth", seen[1].store_error.code)
    -- the request goes out with the new token (as the API peer saw it)
    local res = assert(b:get("/api/me"))
    assert.equal(200, res.status)
    local api = op.api_requests()
    assert.equal(op.sha256(tb), api[#api].token_sha256)
    -- the record is left as it was: the other key still reads it
    assert.same(before, files_of(dir))
    assert.equal(ta, assert(a:token()))
    for _, v in pairs(st.store_error) do
      assert.is_nil(tostring(v):find(tb, 1, true))
      assert.is_nil(tostring(v):find(key1, 1, true))
      assert.is_nil(tostring(v):find(key2, 1, true))
    end
  end)

  it("authorization code: reports store_auth and does not overwrite the record", function()
    local op = helpers.peer("oidc")
    local dir = helpers.tmpdir("sk")
    local key1, key2 = core.b64encode(core.random(32)), core.b64encode(core.random(32))
    local integ = connkit.integration {
      name = "K", key = "k", auth = "oauth2", base_url = "{issuer}", parameters = { issuer = { required = true } },
      oauth2 = { token_url = "{issuer}/token", authorize_url = "{issuer}/auth", scope = "openid offline_access",
        client_id = op.clients.basic.id, client_secret = op.clients.basic.secret },
    }
    local a = integ:account { parameters = { issuer = op.issuer }, store = connkit.store.file(dir, { key = key1 }) }
    assert(a:finish_authorization(assert(op.authorize(a:authorize_url { redirect_uri = op.endpoints.callback }))))
    local before = files_of(dir)
    op.reset()
    local b = integ:account { parameters = { issuer = op.issuer }, store = connkit.store.file(dir, { key = key2 }) }
    local t, err = b:token()
    assert.is_nil(t)
    assert.equal("store_auth", err.code)
    local res, rerr = b:get("/api/me")
    assert.is_nil(res)
    assert.equal("store_auth", rerr.code)
    assert.equal(0, op.stats().token.total)
    assert.equal(0, op.stats().api.total)
    assert.same(before, files_of(dir))
    assert.is_string(assert(a:token()))
  end)
end)
