-- Hooks and health (issue 13 point 6): on_request/on_response around every
-- transfer (each attempt, the retry after a refresh, the token endpoint
-- calls, blocking and connkit.all), never a secret in what they see, a hook
-- that raises does not change the request; account:status() state,
-- last_error, refreshed_at, and on_refresh_error once per failed refresh.
-- Against httpbin and the scripted peer (routes: spec/scripted/routes/hooks.js);
-- what the hooks report is checked against what the peer recorded.
local helpers = require "helpers"
local connkit = require "connkit"
local hooks = require "connkit.hooks"
local socket = require "socket"
local cjson_encode = require("cjson").encode

local hb, sp
local n = 0

local CLIENT_SECRET = "hooks:cl1ent-s3cret-value"
local QUERY_VALUE = "q-v4lue-not-for-logs"

-- Every string in a value, keys included, in one text.
local function dump(v, out)
  out = out or {}
  if type(v) == "table" then
    for k, x in pairs(v) do
      dump(k, out)
      dump(x, out)
    end
  else
    out[#out + 1] = tostring(v)
  end
  return table.concat(out, "\n")
end

-- A recorder: the hooks for a definition or account options, and the list
-- of { name, info } they saw, in order.
local function recorder(tag)
  local seen = {}
  return seen, {
    on_request = function(info) seen[#seen + 1] = { (tag or "") .. "request", info } end,
    on_response = function(info) seen[#seen + 1] = { (tag or "") .. "response", info } end,
  }
end

local function of_kind(seen, name, kind)
  local out = {}
  for _, e in ipairs(seen) do
    if e[1] == name and e[2].kind == kind then out[#out + 1] = e[2] end
  end
  return out
end

-- A client-credentials account on the scripted peer, hooks on the account.
local function cc_account(opts, def_extra)
  n = n + 1
  opts = opts or {}
  opts.parameters = opts.parameters or { base = sp.url }
  local def = {
    name = "Hooks " .. n, key = "hooks" .. n, auth = "oauth2",
    base_url = "{base}", parameters = { base = { required = true } },
    oauth2 = { grant_type = "client_credentials", token_url = "{base}/token/ok",
      client_id = "hooks-client", client_secret = CLIENT_SECRET },
  }
  for k, v in pairs(def_extra or {}) do def[k] = v end
  return connkit.integration(def):account(opts)
end

describe("on_request and on_response", function()
  setup(function()
    hb = helpers.peer("httpbin")
    sp = helpers.peer("scripted")
  end)
  before_each(function() sp.reset() end)

  it("see method, URL without query values, header names, status, elapsed, attempt and transport", function()
    local iseen, ihooks = recorder("i.")
    local aseen, ahooks = recorder("a.")
    local def = {
      name = "Hooks bin", key = "hooksbin", auth = "api_token", base_url = hb.url,
      request_parameters = { headers = { ["X-Region"] = "eu" } },
    }
    for k, v in pairs(ihooks) do def[k] = v end
    local opts = { credentials = { token = "tok-for-hooks-0123456789" } }
    for k, v in pairs(ahooks) do opts[k] = v end
    local acct = connkit.integration(def):account(opts)
    local res = assert(acct:get("/anything/x", { query = { page = 2, limit = QUERY_VALUE },
      headers = { Accept = "application/json" } }))
    assert.equal(200, res.status)
    -- what httpbin received: the query values and the token were sent
    local echo = res:json()
    assert.equal(QUERY_VALUE, echo.args.limit)
    assert.equal("Bearer tok-for-hooks-0123456789", echo.headers.Authorization)
    -- both hooks ran, the integration's first, one request and one response each
    assert.equal(2, #iseen)
    assert.equal(2, #aseen)
    assert.equal("i.request", iseen[1][1])
    assert.equal("i.response", iseen[2][1])
    local req, resp = aseen[1][2], aseen[2][2]
    assert.equal("api", req.kind)
    assert.equal("GET", req.method)
    assert.equal(hb.url .. "/anything/x?limit&page", req.url)
    assert.equal(1, req.attempt)
    assert.equal("curl", req.transport)
    assert.equal(connkit.transport(), req.transport)
    assert.equal("hooksbin", req.integration)
    local names = {}
    for _, h in ipairs(req.headers) do names[h:lower()] = true end
    assert.is_true(names.authorization and names["x-region"] and names.accept)
    assert.is_nil(req.status)
    assert.equal(200, resp.status)
    assert.is_nil(resp.error)
    assert.is_true(resp.elapsed >= 0 and resp.elapsed < 10)
    assert.equal(req.url, resp.url)
    assert.is_nil(dump(aseen):find(QUERY_VALUE, 1, true))
    assert.is_nil(dump(aseen):find("tok-for-hooks-0123456789", 1, true))
  end)

  it("never see a token, the client secret or a query value, also for token endpoint calls", function()
    local seen, h = recorder()
    -- the client secret goes in the token request's query (GET, client_auth post)
    local acct = cc_account(h, { oauth2 = { grant_type = "client_credentials",
      token_url = "{base}/token/ok", token_method = "GET", client_auth = "post",
      client_id = "hooks-client", client_secret = CLIENT_SECRET } })
    local res = assert(acct:get("/resource", { query = { q = QUERY_VALUE } }))
    assert.equal(200, res.status)
    local token = assert(acct:token())
    -- the peer got the secret and the value: they were there to leak
    assert.equal(CLIENT_SECRET, sp.last("/token/ok").query.client_secret)
    assert.equal(QUERY_VALUE, sp.last("/resource").query.q)
    local text = dump(seen)
    for _, secret in ipairs({ token, CLIENT_SECRET, QUERY_VALUE, "hooks%3Acl1ent" }) do
      assert.is_nil(text:find(secret, 1, true), "a secret in the hook info")
    end
    -- the names are there
    local auth = of_kind(seen, "request", "auth")
    assert.equal(1, #auth)
    assert.matches("/token/ok%?", auth[1].url)
    assert.matches("client_secret", auth[1].url)
    assert.matches("grant_type", auth[1].url)
  end)

  it("report each attempt of a 401, refresh and retry, and agree with the peer's record", function()
    local seen, h = recorder()
    local acct = cc_account(h)
    assert.equal(200, assert(acct:get("/resource")).status)
    sp.invalidate_all()
    local res = assert(acct:get("/resource"))
    assert.equal(200, res.status)
    assert.equal(2, res.attempts)
    local order = {}
    for _, e in ipairs(seen) do
      order[#order + 1] = ("%s %s %d %s"):format(e[1], e[2].kind, e[2].attempt, tostring(e[2].status))
    end
    assert.same({
      "request auth 1 nil", "response auth 1 200", "request api 1 nil", "response api 1 200",
      "request api 1 nil", "response api 1 401",
      "request auth 1 nil", "response auth 1 200",
      "request api 2 nil", "response api 2 200",
    }, order)
    assert.equal(#sp.requests("/resource"), #of_kind(seen, "response", "api"))
    assert.equal(#sp.requests("/token/ok"), #of_kind(seen, "response", "auth"))
  end)

  it("report every attempt of the retry rules", function()
    local seen, h = recorder()
    local acct = cc_account(h, { retry = { max = 3, statuses = { 503 }, base = 0.05 } })
    local res = assert(acct:get("/flaky", { query = { key = "hk-retry", fail = 2 } }))
    assert.equal(200, res.status)
    local api = of_kind(seen, "response", "api")
    assert.equal(3, #api)
    assert.same({ 1, 2, 3 }, { api[1].attempt, api[2].attempt, api[3].attempt })
    assert.same({ 503, 503, 200 }, { api[1].status, api[2].status, api[3].status })
    assert.equal(sp.attempts("hk-retry"), #api)
  end)

  it("report each redirect hop followed, as the peer saw them", function()
    local seen, h = recorder()
    local acct = cc_account(h)
    local res = assert(acct:get("/redirect/slow", { query = { n = 2, s = 0, key = "hk-redir" }, follow = true }))
    assert.equal(200, res.status)
    local api = of_kind(seen, "response", "api")
    assert.equal(3, #api)
    assert.same({ 302, 302, 200 }, { api[1].status, api[2].status, api[3].status })
    assert.same({ 1, 2 }, { api[2].redirect, api[3].redirect })
    assert.is_nil(api[1].redirect)
    assert.same({ 1, 1, 1 }, { api[1].attempt, api[2].attempt, api[3].attempt })
    assert.equal(#sp.requests("/redirect/slow"), #api)
    assert.equal(#of_kind(seen, "request", "api"), #api)
  end)

  it("run in connkit.all and req:start(), attempt numbers included", function()
    local seen, h = recorder()
    local acct = cc_account(h)
    assert(acct:token())
    sp.invalidate_all()
    local reqs = {}
    for i = 1, 3 do reqs[i] = assert(acct:prepare { url = "/resource", query = { i = i } }) end
    local results = connkit.all(reqs, { concurrency = 3 })
    for i = 1, 3 do
      assert.equal(200, results[i].res.status)
      assert.equal(2, results[i].res.attempts)
    end
    local api = of_kind(seen, "response", "api")
    assert.equal(6, #api)
    local by_attempt = {}
    for _, info in ipairs(api) do
      local k = info.attempt .. ":" .. info.status
      by_attempt[k] = (by_attempt[k] or 0) + 1
    end
    assert.same({ ["1:401"] = 3, ["2:200"] = 3 }, by_attempt)
    assert.equal(#of_kind(seen, "request", "api"), #api)
    assert.equal(#sp.requests("/resource"), #api)
    -- one token request at the start, one shared refresh
    assert.equal(#sp.requests("/token/ok"), #of_kind(seen, "response", "auth"))
    assert.equal(2, #sp.requests("/token/ok"))
    -- a handle
    local before = #seen
    local handle = reqs[1]:start()
    local res = assert(handle:result())
    assert.equal(200, res.status)
    assert.equal(before + 2, #seen)
    assert.equal("api", seen[#seen][2].kind)
    assert.equal(200, seen[#seen][2].status)
    assert.equal(#sp.requests("/resource"), #of_kind(seen, "response", "api"))
  end)

  it("report a failed attempt with its error code and no status", function()
    local seen, h = recorder()
    n = n + 1
    local dead = "http://127.0.0.1:" .. helpers.free_port()
    local def = { name = "Hooks dead", key = "hooksdead" .. n, auth = "api_token", base_url = dead }
    local opts = { credentials = { token = "tok-dead-0123456789" } }
    for k, v in pairs(h) do opts[k] = v end
    local res, err = connkit.integration(def):account(opts):get("/x?a=1")
    assert.is_nil(res)
    assert.equal("connect", err.code)
    assert.equal(2, #seen)
    assert.equal("connect", seen[2][2].error)
    assert.is_nil(seen[2][2].status)
    assert.equal(dead .. "/x?a", seen[2][2].url)
  end)

  it("that raise do not change the request; the error is reported without secrets", function()
    local lines = {}
    local write = hooks.write_line
    hooks.write_line = function(l) lines[#lines + 1] = l end
    local acct
    local ok, res = pcall(function()
      acct = cc_account({
        on_request = function() error("on_request broke with " .. tostring(acct._values.token)) end,
        on_response = function() error({ "not a string" }) end,
      })
      return acct:get("/resource")
    end)
    hooks.write_line = write
    assert.is_true(ok, tostring(res))
    assert.equal(200, res.status)
    -- (the token request and the API request: two calls of each hook)
    assert.equal(4, #lines)
    local token = assert(acct:token())
    for _, l in ipairs(lines) do
      assert.is_nil(l:find(token, 1, true))
      assert.matches("^connkit: the on_%a+ hook of account", l)
    end
    assert.matches("on_request broke with %*%*%*", table.concat(lines, "\n"))
    assert.equal(1, #sp.requests("/resource"))
  end)

  it("must be callable (an error naming the field)", function()
    assert.has_error(function()
      connkit.integration { name = "x", key = "hooksbad", auth = "none", on_request = "print" }
    end)
    local ok, err = pcall(connkit.integration, { name = "x", key = "hooksbad", auth = "none", on_response = 42 })
    assert.is_false(ok)
    assert.matches("on_response", err)
    local integ = connkit.integration { name = "x", key = "hooksbad", auth = "none" }
    ok, err = pcall(integ.account, integ, { on_refresh_error = true })
    assert.is_false(ok)
    assert.matches("on_refresh_error", err)
  end)
end)

describe("account:status() and on_refresh_error", function()
  setup(function() sp = helpers.peer("scripted") end)
  before_each(function()
    sp.reset()
    sp.request("GET", "/hooks/mode?m=ok")
  end)

  local function mode(m) sp.request("GET", "/hooks/mode?m=" .. m) end

  it("go ok -> expiring -> failing -> reauthorize, on_refresh_error once per failed refresh", function()
    n = n + 1
    local store = connkit.store.memory()
    store.put("acct", { refresh_token = "rt-seed-for-hooks-0123" })
    local failures = {}
    local acct = connkit.integration {
      name = "Hooks state", key = "hooksstate" .. n, auth = "oauth2",
      base_url = "{base}", parameters = { base = { required = true } },
      oauth2 = { grant_type = "authorization_code", token_url = "{base}/hooks/token?ttl=10",
        authorize_url = "{base}/authorize", client_id = "hooks-client", client_secret = CLIENT_SECRET },
      -- a 10 s token is due 3 s after it is fetched (renewed with 70% of its life left)
      refresh = { fraction = 0.7, cooldown = 5 },
      on_refresh_error = function(a, err) failures[#failures + 1] = { a, err } end,
    }:account { id = "acct", parameters = { base = sp.url }, store = store }
    assert.is_nil(acct:status().last_error)
    local t0 = os.time()
    assert.equal(200, assert(acct:get("/resource")).status)
    local st = acct:status()
    assert.equal("ok", st.state)
    assert.is_true(math.abs(st.refreshed_at - t0) <= 2)
    assert.is_nil(st.last_error)

    -- expiring: inside its refresh time, nothing tried yet
    local deadline = socket.gettime() + 6
    while acct:status().state == "ok" and socket.gettime() < deadline do socket.sleep(0.1) end
    assert.equal("expiring", acct:status().state)
    assert.equal(0, #failures)

    -- failing: the renewal fails (503); the old token still works
    mode("down")
    local before = #sp.requests("/hooks/token")
    assert.equal(200, assert(acct:get("/resource")).status)
    assert.equal(before + 1, #sp.requests("/hooks/token"))
    st = acct:status()
    assert.equal("failing", st.state)
    assert.equal("token_endpoint", st.last_error.code)
    assert.matches("503", st.last_error.message)
    assert.equal(1, #failures)
    assert.equal(acct, failures[1][1])
    assert.equal("token_endpoint", failures[1][2].code)
    -- within the cooldown: no new refresh, no new call
    assert.equal(200, assert(acct:get("/resource")).status)
    assert.equal(before + 1, #sp.requests("/hooks/token"))
    assert.equal(1, #failures)

    -- reauthorize: the refresh token is refused
    mode("invalid_grant")
    local ok, err = acct:refresh()
    assert.is_nil(ok)
    assert.equal("reauthorize", err.code)
    assert.equal(2, #failures)
    assert.equal("reauthorize", failures[2][2].code)
    st = acct:status()
    assert.equal("reauthorize", st.state)
    assert.equal("reauthorize", st.last_error.code)
    assert.equal(before + 2, #sp.requests("/hooks/token"))

    -- and back: a refresh that works
    mode("ok")
    assert(acct:refresh())
    st = acct:status()
    assert.equal("ok", st.state)
    assert.equal("reauthorize", st.last_error.code) -- (the last error stays, with its time)
    assert.equal(2, #failures)
    -- no secret in any of it
    local text = dump(st) .. dump(failures[1][2]) .. dump(failures[2][2])
    assert.is_nil(text:find(CLIENT_SECRET, 1, true))
    assert.is_nil(text:find("rt-seed-for-hooks-0123", 1, true))
  end)

  it("is failing after a request without a reply or refused after the refresh, ok after one that works", function()
    local dead = "http://127.0.0.1:" .. helpers.free_port()
    local acct = cc_account({}, { allowed_origins = { dead } })
    assert.equal(200, assert(acct:get("/resource")).status)
    assert.equal("ok", acct:status().state)
    local res, err = acct:get(dead .. "/x")
    assert.is_nil(res)
    assert.equal("connect", err.code)
    local st = acct:status()
    assert.equal("failing", st.state)
    assert.equal("connect", st.last_error.code)
    assert.equal(200, assert(acct:get("/resource")).status)
    assert.equal("ok", acct:status().state)
    -- a 401 that the refresh and retry do not cure
    res = assert(acct:get("/status", { query = { code = 401 } }))
    assert.equal(401, res.status)
    assert.equal(2, #sp.requests("/status"))
    st = acct:status()
    assert.equal("failing", st.state)
    assert.equal("auth", st.last_error.code)
    assert.matches("401", st.last_error.message)
    assert.equal(200, assert(acct:get("/resource")).status)
    assert.equal("ok", acct:status().state)
  end)

  it("says reauthorize for an authorization-code account never authorized", function()
    n = n + 1
    local acct = connkit.integration {
      name = "Hooks new", key = "hooksnew" .. n, auth = "oauth2", base_url = sp.url,
      oauth2 = { grant_type = "authorization_code", token_url = sp.url .. "/hooks/token",
        authorize_url = sp.url .. "/authorize", client_id = "c" , client_auth = "none" },
    }:account {}
    assert.equal("reauthorize", acct:status().state)
    local st = connkit.integration { name = "n", key = "hooksnone" .. n, auth = "none" }:account {}:status()
    assert.equal("ok", st.state)
  end)
end)

describe("hooks inside nginx (the ngx transport)", function()
  local openresty = require "peers.openresty"
  if not openresty.available() then
    it("needs nginx's Lua module", function() pending("libnginx-mod-http-lua is not installed") end)
    return
  end

  it("see every transfer, with transport ngx, in blocking calls, connkit.all and verify()", function()
    sp = helpers.peer("scripted")
    sp.reset()
    local p = helpers.peer("openresty")
    local r = p:run("hooks_ngx", { scripted = sp.url, mark = tostring(os.time()) })
    assert.equal("ngx", r.transport)
    assert.equal(200, r.first)
    assert.same({ status = 200, attempts = 2 }, r.second)
    assert.same({ 200, 200 }, r.all)
    assert.is_true(r.verify)
    assert.equal("ok", r.state)
    local api, auth, attempts = 0, 0, {}
    for _, e in ipairs(r.seen) do
      assert.equal("ngx", e.info.transport)
      if e.name == "response" then
        if e.info.kind == "api" then
          api = api + 1
          attempts[#attempts + 1] = ("%d:%d"):format(e.info.attempt, e.info.status)
        else
          auth = auth + 1
        end
      end
    end
    -- first 200; 401 then 200 after the refresh; two in all(); verify
    assert.same({ "1:200", "1:401", "2:200", "1:200", "1:200", "1:200" }, attempts)
    assert.equal(#sp.requests("/resource"), api)
    assert.equal(#sp.requests("/token/ok"), auth)
    assert.equal(2, auth)
    assert.is_nil(cjson_encode(r.seen):find(r.token, 1, true))
    assert.is_nil(cjson_encode(r.seen):find("ngx-client-secret-value", 1, true))
  end)
end)

describe("examples/verify_and_hooks.lua", function()
  it("runs against httpbin: verifies, logs every transfer, shows no token", function()
    hb = helpers.peer("httpbin")
    local token = "example-token-0123456789"
    local ok, out = helpers.run_example("verify_and_hooks.lua", {}, { API_BASE = hb.url, API_TOKEN = token })
    assert.is_true(ok, out)
    assert.matches("verified", out)
    assert.matches("<%- GET " .. hb.url:gsub("%p", "%%%0") .. "/bearer 200", out)
    assert.matches("%-> GET " .. hb.url:gsub("%p", "%%%0") .. "/status/418%?reason attempt 1 via curl", out)
    assert.matches("status\t418", out)
    assert.matches("state\tok", out)
    assert.is_nil(out:find(token, 1, true))
    assert.is_nil(out:find("teapot", 1, true))
  end)
end)
