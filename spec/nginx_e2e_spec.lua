-- connkit end to end inside nginx (issue 11, point 8): scenarios in
-- spec/nginx/e2e_*.lua run in a worker of Debian's nginx with its Lua module
-- (spec/peers/openresty.lua), through connkit's public API, over the
-- transport connkit picks there. Every test asserts on what the peer
-- received (the scripted peer records each request; oidc-provider counts
-- token and API requests), not only on what the scenario saw.
local helpers = require "helpers"
local openresty = require "peers.openresty"
local cjson = require "cjson"
local socket = require "socket"

local setup = require "nginx.e2e_setup"
local STORE_KEY, AUTHCODE_DEFINITION = setup.STORE_KEY, setup.AUTHCODE_DEFINITION
local init_code, config, received, new_mark = setup.init_code, setup.config, setup.received, setup.new_mark
local REDIRECTOR, PHASE_LOCATIONS = setup.REDIRECTOR, setup.PHASE_LOCATIONS
local wrong_name_certificate = setup.wrong_name_certificate

describe("connkit end to end inside nginx (one worker)", function()
  local p, scripted, op, wrong_port

  lazy_setup(function()
    scripted = helpers.peer("scripted")
    op = helpers.peer("oidc")
    local certs = wrong_name_certificate()
    wrong_port = helpers.free_port()
    p = openresty.start(helpers, {
      workers = 1,
      shared_dicts = { e2e = "1m" },
      init = init_code(config(scripted, op, "main")),
      locations = PHASE_LOCATIONS,
      servers = { redir = REDIRECTOR },
      trust = { certs .. "/ca.pem" },
      http = ([[
  server {
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s/wrong.pem;
    ssl_certificate_key %s/wrong.key;
    location / { default_type text/plain; return 200 "wrong name\n"; }
  }]]):format(wrong_port, certs, certs),
    })
  end)
  lazy_teardown(function()
    if p then p.stop() end
  end)

  local function run(name, args, timeout)
    local r = p:run(name, args, timeout)
    return r
  end

  describe("every auth type", function()
    it("api_token in a header: the peer gets X-Api-Key, over the ngx transport", function()
      local mark = new_mark("hdr")
      local r = run("e2e_auth", { kind = "api_token_header", mark = mark })
      assert.are.equal("ngx", r.transport)
      assert.are.equal(200, r.calls[1].status, cjson.encode(r))
      local got = received(scripted, "/status", mark)
      assert.are.equal(1, #got)
      assert.are.equal("tok-" .. mark, got[1].headers["x-api-key"])
      assert.is_nil(got[1].query.api_key)
      -- sent by the ngx transport: HTTP/1.1 with Host, not libcurl
      assert.are.equal(scripted.url:match("//(.*)$"), got[1].headers.host)
    end)

    it("api_token in the query: the peer gets api_key", function()
      local mark = new_mark("qry")
      local r = run("e2e_auth", { kind = "api_token_query", mark = mark })
      assert.are.equal("ngx", r.transport)
      assert.are.equal(200, r.calls[1].status, cjson.encode(r))
      local got = received(scripted, "/status", mark)
      assert.are.equal(1, #got)
      assert.are.equal("tok-" .. mark, got[1].query.api_key)
      assert.is_nil(got[1].headers["x-api-key"])
    end)

    it("basic: the peer gets the Authorization: Basic of the credentials", function()
      local mark = new_mark("bas")
      local r = run("e2e_auth", { kind = "basic", mark = mark })
      assert.are.equal(200, r.calls[1].status, cjson.encode(r))
      local got = received(scripted, "/status", mark)
      assert.are.equal(1, #got)
      local expected = "Basic " .. (require("mime").b64("user-" .. mark .. ":pw:" .. mark))
      assert.is_true(expected == got[1].headers.authorization, "the Basic credentials of the account")
    end)

    it("custom_token: one login (form body), then the token on each call", function()
      local mark = new_mark("cus")
      local r = run("e2e_auth", { kind = "custom_token", mark = mark, calls = 2 })
      assert.are.equal("ngx", r.transport)
      for i = 1, 2 do assert.are.equal(200, r.calls[i].status, cjson.encode(r)) end
      local logins = received(scripted, "/login", mark)
      assert.are.equal(1, #logins)
      assert.are.equal("POST", logins[1].method)
      assert.are.equal(scripted.login.user, logins[1].form.user)
      assert.is_true(scripted.login.password == logins[1].form.password, "the password, form-encoded")
      local calls = received(scripted, "/resource", mark)
      assert.are.equal(2, #calls)
      -- (compared, never printed: they carry issued tokens)
      assert.is_truthy(calls[1].headers.authorization:find("^Bearer ct%-"), "a Bearer custom token")
      assert.is_true(calls[1].headers.authorization == calls[2].headers.authorization, "the same token twice")
    end)

    it("oauth2 client_credentials against oidc-provider: one token request, the API accepts it", function()
      op.reset()
      local r = run("e2e_auth", { kind = "oauth2_cc", mark = new_mark("cc"), calls = 2 })
      assert.are.equal("ngx", r.transport)
      for i = 1, 2 do
        assert.are.equal(200, r.calls[i].status, cjson.encode(r))
        assert.are.equal("client_credentials", r.calls[i].json.kind)
      end
      local reqs = op.token_requests()
      assert.are.equal(1, #reqs)
      assert.are.equal("client_credentials", reqs[1].grant_type)
      assert.are.equal("basic", reqs[1].client_auth)
      assert.are.equal(op.issuer .. "/api", reqs[1].resource)
      assert.are.equal(2, op.stats().api.ok)
    end)

    it("oauth2 with only an issuer: the metadata comes over the ngx transport; a wrong issuer is refused", function()
      op.reset()
      local r = run("e2e_discovery", { mark = new_mark("disc"), issuer = op.issuer, base = op.issuer, path = "/api/me",
        client_id = op.clients.cc.id, client_secret = op.clients.cc.secret, scope = "api:read", resource = op.issuer .. "/api" })
      assert.are.equal("ngx", r.transport)
      assert.are.equal(200, r.status, cjson.encode(r))
      assert.are.equal(1, #op.token_requests())
      local before = #scripted.requests("/dis/wrong-issuer/.well-known/openid-configuration")
      r = run("e2e_discovery", { mark = new_mark("wrongiss"), issuer = scripted.url .. "/dis/wrong-issuer",
        base = scripted.url, path = "/resource", client_id = "c1", client_secret = "s3cret-of-c1" })
      assert.are.equal("issuer_mismatch", r.err and r.err.code, cjson.encode(r))
      assert.are.equal(before + 1, #scripted.requests("/dis/wrong-issuer/.well-known/openid-configuration"))
      assert.are.equal(0, #scripted.requests("/dis/wrong-issuer/token"))
    end)

    it("oauth2 authorization code: a stored refresh token renews a token the API refuses, once", function()
      op.reset()
      local connkit = require "connkit"
      local dir = p.dir .. "/authcode-store"
      local cfg = config(scripted, op, "main")
      local def = assert(load(AUTHCODE_DEFINITION))()(cfg)
      local id = new_mark("ac")
      local acct = connkit.integration(def):account {
        id = id, parameters = { issuer = op.issuer }, store = connkit.store.file(dir, { key = STORE_KEY }),
      }
      assert(acct:finish_authorization(assert(op.authorize(acct:authorize_url { redirect_uri = op.endpoints.callback }))))
      assert.is_true(op.invalidate(assert(acct:token()))) -- the stored access token is dead now

      local r = run("e2e_authcode", { id = id, dir = dir })
      assert.are.equal("ngx", r.transport)
      assert.are.equal(200, r.status, cjson.encode(r))
      assert.are.equal(op.user, r.json.sub)
      local reqs = op.token_requests()
      assert.are.equal(2, #reqs)
      assert.are.equal("authorization_code", reqs[1].grant_type)
      assert.are.equal("refresh_token", reqs[2].grant_type)
      assert.are.equal(200, reqs[2].status)
      local api = op.stats().api
      assert.are.equal(1, api.unauthorized) -- the refused call
      assert.are.equal(1, api.ok)           -- the one retry
    end)
  end)

  describe("token renewal", function()
    it("renews a token that fell due: the second call waits for a new token request", function()
      local mark = new_mark("due")
      local r = run("e2e_refresh", { kind = "due", mark = mark, ttl = 2 })
      assert.are.equal("ngx", r.transport)
      assert.are.equal(200, r.first.status, cjson.encode(r))
      assert.are.equal(200, r.second.status, cjson.encode(r))
      local tokens = received(scripted, "/token/ok", mark)
      assert.are.equal(2, #tokens)
      assert.are.equal("client_credentials", tokens[1].form.grant_type)
      local calls = received(scripted, "/status", mark)
      assert.are.equal(2, #calls)
      assert.is_true(calls[1].headers.authorization ~= calls[2].headers.authorization, "a new token")
      assert.is_true(tokens[2].time > calls[1].time and tokens[2].time <= calls[2].time,
        ("token 1 at %.3f, call 1 at %.3f, token 2 at %.3f, call 2 at %.3f"):format(
          tokens[1].time, calls[1].time, tokens[2].time, calls[2].time))
    end)

    it("a 401 for the token: one refresh and one retry with the new token", function()
      local mark = new_mark("ref")
      local r = run("e2e_refresh", { kind = "refused", mark = mark })
      assert.are.equal(200, r.first.status, cjson.encode(r))
      assert.are.equal(2, #received(scripted, "/token/ok", mark))
      local calls = {}
      for _, c in ipairs(scripted.requests("/resource/stale-first")) do
        if c.query.key == mark then calls[#calls + 1] = c end
      end
      assert.are.equal(2, #calls) -- refused once, retried once
      assert.is_true(calls[1].headers.authorization ~= calls[2].headers.authorization, "the retry's new token")
    end)
  end)

  describe("redirects", function()
    it("follows a same-origin redirect with the credentials and request parameters", function()
      local base = p.servers.redir.url
      local r = run("e2e_redirect", { base = base, to = "/echo?hop=1", mark = new_mark("rdr") })
      assert.are.equal("ngx", r.transport)
      assert.are.equal(200, r.status, cjson.encode(r))
      assert.are.equal("/echo?hop=1", r.json.uri)          -- the peer at the end of the hop
      assert.matches("^tok%-rdr", r.json.headers["x-api-key"])
      assert.are.equal("eu", r.json.headers["x-region"])
    end)

    it("drops the credentials and request parameters on a cross-origin hop", function()
      local mark = new_mark("xo")
      local to = scripted.url .. "/status?code=200&mark=" .. mark
      local r = run("e2e_redirect", { base = p.servers.redir.url, to = to, mark = mark })
      assert.are.equal(200, r.status, cjson.encode(r))
      local got = received(scripted, "/status", mark)
      assert.are.equal(1, #got)
      assert.is_nil(got[1].headers["x-api-key"])
      assert.is_nil(got[1].headers["x-region"])
      assert.is_nil(got[1].headers.authorization)
    end)
  end)

  it("retries a 503 after short waits that do not block the worker (/ping answers meanwhile)", function()
    local mark = new_mark("rt")
    local batch = p:parallel({ "/run/e2e_retry" .. openresty.query({ mark = mark, fail = 2 }) }, 20)
    socket.sleep(0.6) -- inside the first wait (0.5 to 1 s) or the second (1 to 2 s)
    local status, body, ping = p:get("/ping")
    local results = batch.wait()
    assert.are.equal(200, results[1].status, p:log_tail())
    assert.are.equal(200, status)
    assert.are.equal("pong\n", body)
    assert.is_true(ping < 0.05, ("/ping took %.0f ms"):format(ping * 1000))
    local tries = {}
    for _, t in ipairs(scripted.requests("/flaky")) do
      if t.query.key == mark then tries[#tries + 1] = t end
    end
    assert.are.equal(3, #tries) -- two 503s, then 200
    -- waits of base 1 s with jitter: 0.5 to 1 s, then 1 to 2 s
    assert.is_true(tries[2].time - tries[1].time >= 0.45, "first wait")
    assert.is_true(tries[3].time - tries[2].time >= 0.95, "second wait")
    assert.are.equal(3, scripted.attempts(mark))
  end)

  it("times out a stalled upstream with code timeout, within the request's timeout", function()
    local r = run("e2e_timeout", { timeout = 1 })
    assert.are.equal("ngx", r.transport)
    assert.is_nil(r.status)
    assert.are.equal("timeout", r.err.code, cjson.encode(r))
    assert.is_true(r.elapsed >= 0.9 and r.elapsed < 1.5, "elapsed " .. r.elapsed)
  end)

  describe("TLS", function()
    local other

    lazy_setup(function()
      other = openresty.start(helpers, {}) -- a CA of its own, not trusted by p
    end)
    lazy_teardown(function()
      if other then other.stop() end
    end)

    it("verifies the peer against lua_ssl_trusted_certificate (the private CA)", function()
      local r = run("e2e_tls", { base = p.https_url })
      assert.are.equal("ngx", r.transport)
      assert.are.equal(200, r.status, cjson.encode(r))
      assert.are.equal("pong\n", r.body)
      -- a server whose CA nginx does not trust: refused, code tls, every
      -- time (the second handshake resumes a session: lua-nginx-module
      -- 0.10.23 then says true on a closed connection)
      for _ = 1, 3 do
        r = run("e2e_tls", { base = other.https_url })
        assert.is_nil(r.status)
        assert.are.equal("tls", r.err.code, cjson.encode(r))
        assert.matches("lua_ssl_trusted_certificate", r.err.message, 1, true)
      end
    end)

    it("refuses a certificate from a trusted CA made out for another name", function()
      -- curl refuses it too: "no alternative certificate subject name matches"
      local r = run("e2e_tls", { base = "https://127.0.0.1:" .. wrong_port })
      assert.are.equal("ngx", r.transport)
      assert.is_nil(r.status, cjson.encode(r))
      assert.are.equal("tls", r.err.code, cjson.encode(r))
    end)

    it("refuses tls.ca_file under ngx with code config, saying what to configure", function()
      local r = run("e2e_tls", { base = p.https_url, ca_file = p.ca_file })
      assert.is_nil(r.status)
      assert.are.equal("config", r.err.code, cjson.encode(r))
      assert.matches("lua_ssl_trusted_certificate", r.err.message, 1, true)
    end)
  end)

  it("connkit.all: replies in input order, at most `concurrency` at a time", function()
    local mark = new_mark("all")
    local r = run("e2e_all", { n = 6, c = 3, s = 0.5, mark = mark })
    assert.are.equal("ngx", r.transport)
    for i = 1, 6 do assert.are.equal(200, r.results[i].status, cjson.encode(r)) end
    -- two rounds of three 0.5 s calls: about 1 s, not 3 s (one at a time), not 0.5 s
    assert.is_true(r.elapsed >= 0.95 and r.elapsed < 1.8, "elapsed " .. r.elapsed)
    local got = received(scripted, "/delay", mark)
    assert.are.equal(6, #got)
    local seen = {}
    for _, g in ipairs(got) do
      seen[#seen + 1] = tonumber(g.query.i)
      assert.are.equal("tok-" .. mark, g.headers["x-api-key"])
    end
    table.sort(seen)
    assert.are.same({ 1, 2, 3, 4, 5, 6 }, seen)
    -- at most three in flight: the fourth arrived after the first round
    table.sort(got, function(a, b) return a.time < b.time end)
    assert.is_true(got[4].time - got[1].time >= 0.45)
    assert.is_true(got[3].time - got[1].time < 0.3)
  end)

  it("connkit.all on a token account: the light threads wait for one token request", function()
    local mark = new_mark("allcc")
    local r = run("e2e_all", { n = 6, c = 6, s = 0.2, mark = mark, auth = "oauth2" })
    assert.are.equal("ngx", r.transport)
    for i = 1, 6 do assert.are.equal(200, r.results[i].status, cjson.encode(r)) end
    assert.are.equal(1, #received(scripted, "/token/ok", mark))
    local got = received(scripted, "/delay", mark)
    assert.are.equal(6, #got)
    for _, g in ipairs(got) do
      assert.is_truthy(g.headers.authorization:find("^Bearer "), "a Bearer token")
      assert.is_true(got[1].headers.authorization == g.headers.authorization, "one token for all")
    end
    assert.is_true(r.elapsed < 1.0, "elapsed " .. r.elapsed) -- in parallel after the token
  end)

  it("req:start() returns at once, handle:result() waits (yielding) for the reply", function()
    local mark = new_mark("st")
    local r = run("e2e_start", { mark = mark })
    assert.are.equal("ngx", r.transport)
    assert.is_true(r.start_took < 0.1, "start took " .. r.start_took)
    assert.is_false(r.done_at_once)
    assert.is_true(r.done_after)
    assert.are.equal(200, r.status, cjson.encode(r))
    assert.is_true(r.elapsed >= 0.95)
    assert.are.equal(1, #received(scripted, "/delay", mark))
  end)

  describe("phases", function()
    for _, case in ipairs({ { "log", "/e2e/log_phase", "phaselog" }, { "header_filter", "/e2e/header_phase", "phaseheader" } }) do
      local phase, path, mark = case[1], case[2], case[3]
      it(("raises in the %s phase, naming it and suggesting ngx.timer.at; nothing is sent"):format(phase), function()
        assert.are.equal(200, (p:get(path)))
        local r
        for _ = 1, 50 do -- the log phase runs after the reply
          r = run("e2e_phase_probe", { read = phase })
          if r ~= cjson.null then break end
          socket.sleep(0.02)
        end
        assert.are.equal(phase, r.phase)
        assert.is_nil(r.transport)
        assert.matches(phase, r.why, 1, true)
        assert.is_string(r.raised)
        assert.matches("nginx's " .. phase .. " phase", r.raised, 1, true)
        assert.matches("ngx.timer.at", r.raised, 1, true)
        assert.are.equal(0, #received(scripted, "/status", mark))
      end)
    end

    it("init_by_lua uses the curl transport: the request made there reached the peer", function()
      local r = run("e2e_fork", { mark = new_mark("ini") })
      assert.are.same({ transport = "curl", status = 200 }, r.init)
      local got = {}
      for _, g in ipairs(received(scripted, "/status", "init")) do
        if g.query.instance == "main" then got[#got + 1] = g end
      end
      assert.are.equal(1, #got)
    end)
  end)
end)

describe("connkit inside nginx with 4 workers (fork safety)", function()
  local p, scripted

  lazy_setup(function()
    scripted = helpers.peer("scripted")
    local op = helpers.peer("oidc")
    p = openresty.start(helpers, { workers = 4, init = init_code(config(scripted, op, "fork")) })
  end)
  lazy_teardown(function()
    if p then p.stop() end
  end)

  it("a request in init_by_lua (before the fork), then curl and ngx requests in every worker", function()
    local mark = new_mark("fork")
    local paths = {}
    for i = 1, 40 do paths[i] = "/run/e2e_fork" .. openresty.query({ mark = mark, i = i }) end
    local results = p:parallel(paths, 30).wait()
    for i, r in ipairs(results) do assert.are.equal(200, r.status, ("call %d\n%s"):format(i, p:log_tail())) end
    local init = {}
    for _, g in ipairs(received(scripted, "/status", "init")) do
      if g.query.instance == "fork" then init[#init + 1] = g end
    end
    assert.are.equal(1, #init) -- made once, in the master
    local got = received(scripted, "/status", mark)
    local via, pids = { curl = 0, auto = 0 }, {}
    for _, g in ipairs(got) do
      via[g.query.via] = via[g.query.via] + 1
      pids[g.query.pid] = true
    end
    assert.are.same({ curl = 40, auto = 40 }, via)
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.is_true(n >= 2, "the calls reached " .. n .. " worker(s)")
    -- the scenario saw what each transport was
    local r = p:run("e2e_fork", { mark = mark .. "x" })
    assert.are.equal("ngx", r.default)
    assert.are.equal("curl", r.forced)
    assert.are.equal(200, r.curl.status)
    assert.are.equal(200, r.auto.status)
    assert.are.same({ transport = "curl", status = 200 }, r.init)
  end)
end)
