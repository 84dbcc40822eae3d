-- Non-blocking means non-blocking, token fetches included (issue 9 points 8
-- and 10): req:start() on a token account with no valid token returns
-- while the token request is under way; the handle (driven by connkit.poll
-- or done()) waits for it; handles, blocking calls and connkit.all that need
-- the same account's token share one token request; a 401 during all()
-- causes one refresh; attempts count the refresh and retry. Against the
-- scripted peer's slow token endpoint and /resource, and oidc-provider's
-- client credentials grant. Assertions are on what the peers received.
local helpers = require "helpers"
local connkit = require "connkit"
local core = require "connkit.core"

local sp -- the scripted peer
local n = 0

-- A client-credentials integration whose token URL is `token_path` on the
-- scripted peer (default: a reply after 1 s).
local function cc_integration(token_path, extra)
  n = n + 1
  local def = {
    name = "Async token " .. n, key = "asynctok" .. n, auth = "oauth2",
    base_url = "{base}", parameters = { base = { required = true } },
    oauth2 = { grant_type = "client_credentials", token_url = "{base}" .. (token_path or "/token/slow?delay=1"),
      client_id = "async-client", client_secret = "async:s3cret" },
  }
  for k, v in pairs(extra or {}) do def[k] = v end
  return connkit.integration(def)
end

local function cc_account(token_path, opts)
  opts = opts or {}
  opts.parameters = { base = sp.url }
  return cc_integration(token_path):account(opts)
end

local function token_requests(path) return sp.requests(path or "/token/slow") end
local function bearer_of(r) return (r.headers.authorization or ""):match("^Bearer (.+)$") end

-- Starts the request and asserts start() did not wait for the token.
local function start(acct, opts)
  local req = assert(acct:prepare(opts))
  local t0 = core.now()
  local h = req:start()
  local took = core.now() - t0
  assert.is_true(took < 0.5, ("start() took %.2f s"):format(took))
  assert.is_false(h:done())
  return h
end

-- Polls (only connkit.poll) until f() is true or `limit` seconds pass.
local function poll_until(f, limit)
  local t0 = core.now()
  while not f() do
    assert(core.now() - t0 < (limit or 10), "timed out")
    connkit.poll(0.02)
  end
end

describe("a token fetch inside a non-blocking request", function()
  setup(function() sp = helpers.peer("scripted") end)
  before_each(function() sp.reset() end)

  it("start() returns before the token endpoint answers; poll and done() finish it", function()
    local acct = cc_account()
    local req = assert(acct:prepare { url = "/resource" })
    local t0 = core.now()
    local h = req:start()
    local took = core.now() - t0
    assert.is_true(took < 0.5, ("start() took %.2f s"):format(took))
    assert.is_false(h:done())
    -- nothing reached the API yet, and the token reply is still to come
    assert.equal(0, #sp.requests("/resource"))
    local slowest, polls = 0, 0
    while not h:done() do
      local t = core.now()
      connkit.poll(0)
      slowest = math.max(slowest, core.now() - t)
      polls = polls + 1
      core.sleep(0.01)
    end
    assert.is_true(polls > 20, "only " .. polls .. " polls")
    assert.is_true(slowest < 0.2, ("poll(0) blocked for %.2f s"):format(slowest))
    local res = assert(h:result())
    assert.equal(200, res.status)
    assert.equal(1, res.attempts)
    local toks, api = token_requests(), sp.requests("/resource")
    assert.equal(1, #toks)
    assert.equal("client_credentials", toks[1].form.grant_type)
    assert.equal(1, #api)
    -- the token request arrived at once; the API request after its reply
    assert.is_true(toks[1].time - t0 < 0.5)
    assert.is_true(api[1].time - toks[1].time >= 0.9)
    assert.equal(acct:token(), bearer_of(api[1]))
    assert.equal(1, #token_requests())
  end)

  it("connkit.poll alone moves the handle on to its API request", function()
    local acct = cc_account()
    local h = start(acct, { url = "/resource" })
    poll_until(function() return #sp.requests("/resource") == 1 end)
    poll_until(function() return h:done() end)
    assert.equal(200, assert(h:result()).status)
  end)

  it("two handles started back to back share one token request", function()
    local acct = cc_account()
    local t0 = core.now()
    local h1 = assert(acct:prepare { url = "/resource", query = { n = 1 } }):start()
    local h2 = assert(acct:prepare { url = "/resource", query = { n = 2 } }):start()
    assert.is_true(core.now() - t0 < 0.5)
    poll_until(function() return h1:done() and h2:done() end)
    local r1, e1 = h1:result()
    local r2, e2 = h2:result()
    assert.is_nil(e1)
    assert.is_nil(e2)
    assert.equal(200, r1.status)
    assert.equal(200, r2.status)
    assert.equal(1, #token_requests())
    local api = sp.requests("/resource")
    assert.equal(2, #api)
    assert.equal(bearer_of(api[1]), bearer_of(api[2]))
    assert.equal(acct:token(), bearer_of(api[1]))
  end)

  it("a blocking request while a handle fetches the token waits for that fetch", function()
    local acct = cc_account()
    local h = start(acct, { url = "/resource", query = { n = 1 } })
    local res = assert(acct:get("/resource", { query = { n = 2 } }))
    assert.equal(200, res.status)
    assert.equal(200, assert(h:result()).status)
    assert.equal(1, #token_requests())
    assert.equal(acct:token(), bearer_of(sp.last("/resource")))
  end)

  it("result() before done() drives the token fetch and the request", function()
    local acct = cc_account()
    local h = start(acct, { url = "/resource" })
    local res = assert(h:result())
    assert.equal(200, res.status)
    assert.is_true(h:done())
    assert.equal(1, #token_requests())
    assert.equal(acct:token(), bearer_of(sp.last("/resource")))
  end)

  it("a cancelled handle leaves the token fetch to the account", function()
    local acct = cc_account()
    local h = start(acct, { url = "/resource" })
    h:cancel()
    local _, err = h:result()
    assert.equal("cancelled", err.code)
    assert.equal(200, assert(acct:get("/resource")).status)
    assert.equal(1, #token_requests())
    assert.equal(1, #sp.requests("/resource"))
  end)

  it("a custom token is fetched the same way", function()
    n = n + 1
    local acct = connkit.integration {
      name = "Async custom " .. n, key = "asyncct" .. n, auth = "custom_token",
      base_url = "{base}", parameters = { base = { required = true } },
      custom_token = { token_url = "{base}/token/slow?delay=1", params = { user = "{username}" } },
    }:account { parameters = { base = sp.url }, credentials = { username = "alice" } }
    local t0 = core.now()
    local h = assert(acct:prepare { url = "/resource" }):start()
    assert.is_true(core.now() - t0 < 0.5)
    poll_until(function() return h:done() end)
    assert.equal(200, assert(h:result()).status)
    local toks = token_requests()
    assert.equal(1, #toks)
    assert.equal("alice", toks[1].form.user)
    assert.equal(acct:token(), bearer_of(sp.last("/resource")))
  end)

  it("an expired authorization-code token is refreshed the same way", function()
    n = n + 1
    local store = connkit.store.memory()
    store.put("expired", { access_token = "old-token", refresh_token = "rt-async-1",
      issued_at = os.time() - 7200, expires_at = os.time() - 10 })
    local acct = connkit.integration {
      name = "Async code " .. n, key = "asyncac" .. n, auth = "oauth2",
      base_url = "{base}", parameters = { base = { required = true } },
      oauth2 = { token_url = "{base}/token/slow?delay=1", authorize_url = "{base}/authorize",
        client_id = "async-client", client_secret = "async:s3cret" },
    }:account { id = "expired", parameters = { base = sp.url }, store = store }
    local t0 = core.now()
    local h1 = assert(acct:prepare { url = "/resource" }):start()
    local h2 = assert(acct:prepare { url = "/resource" }):start()
    assert.is_true(core.now() - t0 < 0.5)
    poll_until(function() return h1:done() and h2:done() end)
    assert.equal(200, assert(h1:result()).status)
    assert.equal(200, assert(h2:result()).status)
    local toks = token_requests()
    assert.equal(1, #toks)
    assert.equal("refresh_token", toks[1].form.grant_type)
    assert.equal("rt-async-1", toks[1].form.refresh_token)
    for _, r in ipairs(sp.requests("/resource")) do assert.equal(acct:token(), bearer_of(r)) end
    assert.are_not.equal("old-token", acct:token())
  end)

  it("two account objects on one store record make one token request", function()
    local integ = cc_integration()
    local store = connkit.store.memory()
    local a = integ:account { id = "shared", parameters = { base = sp.url }, store = store }
    local b = integ:account { id = "shared", parameters = { base = sp.url }, store = store }
    local ha = start(a, { url = "/resource" })
    local hb = start(b, { url = "/resource" })
    poll_until(function() return ha:done() and hb:done() end)
    assert.equal(200, assert(ha:result()).status)
    assert.equal(200, assert(hb:result()).status)
    assert.equal(1, #token_requests())
    assert.equal(a:token(), b:token())
  end)

  it("two account objects on two file store objects over one directory take turns", function()
    local integ = cc_integration()
    local dir = helpers.tmpdir("turns")
    local key = core.b64encode(core.random(32))
    local a = integ:account { id = "shared", parameters = { base = sp.url }, store = connkit.store.file(dir, { key = key }) }
    local b = integ:account { id = "shared", parameters = { base = sp.url }, store = connkit.store.file(dir, { key = key }) }
    local ha = start(a, { url = "/resource" })
    local hb = start(b, { url = "/resource" })
    poll_until(function() return ha:done() and hb:done() end)
    assert.equal(200, assert(ha:result()).status)
    assert.equal(200, assert(hb:result()).status)
    assert.equal(1, #token_requests())
    assert.equal(a:token(), b:token())
    assert.equal(a:token(), bearer_of(sp.last("/resource")))
  end)

  it("an error raised by on_token during the fetch is raised by done() and result()", function()
    local acct = cc_account("/token/slow?delay=0.3", { on_token = function() error("on_token broke", 0) end })
    local h = start(acct, { url = "/resource" })
    local ok, err = pcall(poll_until, function() return h:done() end)
    assert.is_false(ok)
    assert.equal("on_token broke", err)
    assert.has_error(function() h:result() end, "on_token broke")
    assert.equal(1, #token_requests())
    assert.equal(0, #sp.requests("/resource"))
  end)

  it("on_token may use the account while the handle waits (token, a blocking request, refresh)", function()
    local seen = {}
    local acct = cc_account("/token/slow?delay=0.3", { on_token = function(a)
      seen.token = a:token()
      seen.status = a:get("/resource", { query = { from = "hook" } }).status
      seen.refresh = a:refresh()
    end })
    local h = start(acct, { url = "/resource" })
    poll_until(function() return h:done() end)
    assert.equal(200, assert(h:result()).status)
    assert.equal(acct:token(), seen.token)
    assert.equal(200, seen.status)
    assert.is_true(seen.refresh)
    assert.equal(1, #token_requests())
    local api = sp.requests("/resource")
    assert.equal(2, #api)
    assert.equal("hook", api[1].query.from)
    for _, r in ipairs(api) do assert.equal(seen.token, bearer_of(r)) end
  end)

  it("a failed token fetch fails every handle waiting for it, with one token request", function()
    -- the token request (the account's timeout, 0.5 s) fails well before
    -- the requests' own deadlines (2 s): every handle gets that failure
    -- (with equal deadlines, which of the two came first was a race)
    local acct = cc_account("/token/slow?delay=3", { timeout = 0.5 })
    local h1 = start(acct, { url = "/resource", timeout = 2 })
    local h2 = start(acct, { url = "/resource", timeout = 2 })
    poll_until(function() return h1:done() and h2:done() end)
    local r1, e1 = h1:result()
    local r2, e2 = h2:result()
    assert.is_nil(r1)
    assert.is_nil(r2)
    assert.equal("timeout", e1.code)
    assert.equal("timeout", e2.code)
    assert.are_not.equal(e1, e2) -- each its own, for its own attempts
    assert.equal(1, e1.attempts)
    assert.equal(e1.message, e2.message)
    assert.matches("token endpoint", e1.message, 1, true)
    assert.equal(1, #token_requests())
    assert.equal(0, #sp.requests("/resource"))
  end)
end)

describe("connkit.all on a token account", function()
  setup(function() sp = helpers.peer("scripted") end)
  before_each(function() sp.reset() end)

  it("fetches the missing token once for the whole batch", function()
    local acct = cc_account("/token/slow?delay=0.5")
    local reqs = {}
    for i = 1, 6 do reqs[i] = assert(acct:prepare { url = "/resource", query = { i = i } }) end
    local results = connkit.all(reqs, { concurrency = 4 })
    assert.equal(6, #results)
    for i = 1, 6 do
      assert.is_nil(results[i].err)
      assert.equal(200, results[i].res.status)
      assert.equal(1, results[i].res.attempts)
    end
    assert.equal(1, #token_requests())
    local api = sp.requests("/resource")
    assert.equal(6, #api)
    local seen = {}
    for _, r in ipairs(api) do
      assert.equal(acct:token(), bearer_of(r))
      seen[r.query.i] = true
    end
    for i = 1, 6 do assert.is_true(seen[tostring(i)]) end
  end)

  it("shares the token fetch a started handle has under way", function()
    local acct = cc_account()
    local h = start(acct, { url = "/resource", query = { i = 0 } })
    local reqs = {}
    for i = 1, 3 do reqs[i] = assert(acct:prepare { url = "/resource", query = { i = i } }) end
    local results = connkit.all(reqs)
    for i = 1, 3 do assert.equal(200, results[i].res.status) end
    assert.equal(200, assert(h:result()).status)
    assert.equal(1, #token_requests())
    assert.equal(4, #sp.requests("/resource"))
  end)

  it("a 401 during all(): one refresh, every request retried once and counted", function()
    local acct = cc_account("/token/ok")
    local old = assert(acct:token())
    sp.invalidate_all()
    local reqs = {}
    for i = 1, 5 do reqs[i] = assert(acct:prepare { url = "/resource", query = { i = i } }) end
    local results = connkit.all(reqs, { concurrency = 5 })
    local new = assert(acct:token())
    assert.are_not.equal(old, new)
    for i = 1, 5 do
      assert.is_nil(results[i].err)
      assert.equal(200, results[i].res.status)
      assert.equal(2, results[i].res.attempts)
    end
    assert.equal(2, #token_requests("/token/ok")) -- the first token and one refresh
    local refused, ok = 0, 0
    for _, r in ipairs(sp.requests("/resource")) do
      if bearer_of(r) == old then refused = refused + 1 else
        assert.equal(new, bearer_of(r))
        ok = ok + 1
      end
    end
    assert.equal(5, refused)
    assert.equal(5, ok)
  end)
end)

describe("attempts count the refresh and retry", function()
  setup(function() sp = helpers.peer("scripted") end)
  before_each(function() sp.reset() end)

  it("send(): 401, refresh, 200 is two attempts", function()
    local acct = cc_account("/token/ok")
    assert(acct:token())
    sp.invalidate_all()
    local res = assert(acct:get("/resource"))
    assert.equal(200, res.status)
    assert.equal(2, res.attempts)
    assert.equal(2, #sp.requests("/resource"))
    assert.equal(2, #token_requests("/token/ok"))
  end)

  it("a handle: 401, refresh, 200 is two attempts", function()
    local acct = cc_account("/token/ok")
    assert(acct:token())
    sp.invalidate_all()
    local h = assert(acct:prepare { url = "/resource" }):start()
    poll_until(function() return h:done() end)
    local res = assert(h:result())
    assert.equal(200, res.status)
    assert.equal(2, res.attempts)
    assert.equal(2, #sp.requests("/resource"))
  end)

  it("a refusal after the refresh is returned, not refreshed again, and counts two", function()
    local acct = cc_account("/token/ok")
    local res = assert(acct:get("/resource/stale-first", { query = { key = "x" } }))
    -- the first token is refused for ever: refresh, retry with the new one (200)
    assert.equal(200, res.status)
    assert.equal(2, res.attempts)
    local res2 = assert(acct:get("/status", { query = { code = 401 } }))
    assert.equal(401, res2.status)
    assert.equal(2, res2.attempts)
    assert.equal(3, #token_requests("/token/ok"))
  end)
end)

describe("client credentials against oidc-provider, non-blocking", function()
  it("start(): one token request for two handles, the API sees the token", function()
    local op = helpers.peer("oidc")
    op.reset()
    n = n + 1
    local acct = connkit.integration {
      name = "Async cc " .. n, key = "asynccc" .. n, auth = "oauth2",
      base_url = "{issuer}", parameters = { issuer = { required = true } },
      oauth2 = { grant_type = "client_credentials", token_url = "{issuer}/token",
        client_id = op.clients.cc.id, client_secret = op.clients.cc.secret },
    }:account { parameters = { issuer = op.issuer } }
    local h1 = start(acct, { url = "/api/me" })
    local h2 = start(acct, { url = "/api/me" })
    poll_until(function() return h1:done() and h2:done() end)
    assert.equal(200, assert(h1:result()).status)
    assert.equal(200, assert(h2:result()).status)
    assert.equal(1, op.stats().token.by_grant_type.client_credentials.ok)
    local api = op.api_requests()
    assert.equal(2, #api)
    local sha = op.sha256(acct:token())
    for _, r in ipairs(api) do assert.equal(sha, r.token_sha256) end
  end)
end)
