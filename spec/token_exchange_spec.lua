-- Token exchange (RFC 8693): account:exchange against oidc-provider, whose
-- token-exchange grant is spec/oidc/ext/exchange.mjs (it checks the
-- subject token against the tokens it issued, honours audience, resource
-- and scope, and records what it received: stats().exchange). Every test
-- asserts on what the peer received or what the resource (/api/me) saw.
local helpers = require "helpers"
local connkit = require "connkit"
local discovery = require "connkit.auth.discovery"

local URN = "urn:ietf:params:oauth:token-type:"
local GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
local CLIENT = { id = "exchange-client", secret = "xch:s3cret/+ %" }
local POST_CLIENT = { id = "exchange-post-client", secret = "xchpost:s3cret&=" }

local op
local n = 0

-- An authorization-code integration of the exchange client with only the
-- issuer set (the token endpoint is discovered).
local function integration(extra, client)
  client = client or CLIENT
  local o = { issuer = "{issuer}", client_id = client.id, client_secret = client.secret, scope = "openid api read" }
  for k, v in pairs(extra or {}) do o[k] = v end
  n = n + 1
  return connkit.integration {
    name = "Exchange " .. n, key = "xch" .. n, auth = "oauth2", base_url = "{issuer}",
    parameters = { issuer = { required = true } }, oauth2 = o,
  }
end

local function account(extra, opts)
  opts = opts or {}
  opts.parameters = { issuer = op.issuer }
  return integration(extra):account(opts)
end

-- A user's account, authorized headless through the peer's callback sink.
local function user_account(opts)
  local a = account(nil, opts)
  local url = assert(a:authorize_url { redirect_uri = op.endpoints.callback })
  assert(a:finish_authorization(assert(op.authorize(url))))
  return a
end

-- /api/me with a bare token, as any other client of the resource would send it.
local function api_with(token)
  local probe = connkit.integration { name = "Probe", key = "probe", auth = "api_token", base_url = "{issuer}",
    parameters = { issuer = { required = true } } }:account { parameters = { issuer = op.issuer }, credentials = { token = token } }
  return assert(probe:get("/api/me"))
end

local function exchanges() return (op.stats().exchange or { total = 0, requests = {} }) end
local function last_exchange()
  local r = exchanges().requests
  return r[#r]
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

-- Every string inside a value (keys and values, nested), joined: what a
-- hook or a result could show.
local function all_text(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "table" then
    if seen[v] then return out end
    seen[v] = true
    for k, x in pairs(v) do all_text(k, out, seen); all_text(x, out, seen) end
  elseif v ~= nil then
    out[#out + 1] = tostring(v)
  end
  return out
end

describe("account:exchange against oidc-provider", function()
  setup(function() op = helpers.peer("oidc") end)
  before_each(function()
    op.reset()
    discovery.flush()
  end)

  it("trades the account's access token for one the resource accepts", function()
    local a = user_account()
    local subject = assert(a:token())
    local r, err = a:exchange { subject_token = "self", audience = "connkit-api", scope = "api" }
    assert.is_nil(err)
    assert.is_string(r.access_token)
    assert.are_not.equal(subject, r.access_token)
    assert.equal(URN .. "access_token", r.issued_token_type)
    assert.equal("Bearer", r.token_type)
    assert.equal("api", r.scope)
    assert.is_true(r.expires_in > 3000 and r.expires_in <= 3600)
    assert.is_false(r.has_refresh_token)
    -- what the grant received
    local got = last_exchange()
    assert.equal(200, got.status)
    assert.equal(op.sha256(subject), got.subject_token_sha256)
    assert.equal(URN .. "access_token", got.subject_token_type)
    assert.equal("connkit-api", got.audience)
    assert.equal("api", got.scope)
    assert.equal(op.sha256(r.access_token), got.issued_token_sha256)
    assert.same({ "audience", "grant_type", "scope", "subject_token", "subject_token_type" }, got.params)
    local tr = op.token_requests()
    assert.equal(GRANT, tr[#tr].grant_type)
    assert.equal("basic", tr[#tr].client_auth)
    assert.equal(CLIENT.id, tr[#tr].client_id)
    -- the resource takes it, for the same user
    local res = api_with(r.access_token)
    assert.equal(200, res.status)
    assert.equal("tester", res:json().sub)
    assert.equal("api", res:json().scope)
    local seen = op.api_requests()
    assert.equal(op.sha256(r.access_token), seen[#seen].token_sha256)
  end)

  it("sends a given subject token, an actor, the short type names as URNs, and posts to a configured token_url", function()
    local user = user_account()
    local subject = assert(user:token())
    -- a client-credentials account of the post-client, token_url given
    local svc = connkit.integration {
      name = "Svc", key = "xchsvc", auth = "oauth2", base_url = op.issuer,
      oauth2 = { grant_type = "client_credentials", token_url = op.endpoints.token, client_auth = "post",
        client_id = POST_CLIENT.id, client_secret = POST_CLIENT.secret, scope = "api" },
    }:account {}
    local actor = assert(svc:token())
    op.reset()
    local r = assert(svc:exchange { subject_token = subject, subject_token_type = "access_token",
      actor_token = "self", actor_token_type = "access_token", requested_token_type = "access_token",
      resource = { op.resource, "urn:connkit:api" }, audience = { "connkit-api", "urn:connkit:api" } })
    local got = last_exchange()
    assert.equal(200, got.status)
    assert.equal(op.sha256(subject), got.subject_token_sha256)
    assert.equal(op.sha256(actor), got.actor_token_sha256)
    assert.equal(URN .. "access_token", got.subject_token_type)
    assert.equal(URN .. "access_token", got.actor_token_type)
    assert.equal(URN .. "access_token", got.requested_token_type)
    assert.same({ op.resource, "urn:connkit:api" }, got.resource)
    assert.same({ "connkit-api", "urn:connkit:api" }, got.audience)
    local tr = op.token_requests()
    assert.equal(1, #tr)
    assert.equal("post", tr[1].client_auth)
    assert.equal("POST", tr[1].method)
    -- the subject's user, the exchanging client
    local me = api_with(r.access_token):json()
    assert.equal("tester", me.sub)
    assert.equal(POST_CLIENT.id, me.client_id)
  end)

  it("takes another account as the subject, and an absolute URI as a token type as it is", function()
    local user = user_account()
    local svc = account()
    op.reset()
    assert(svc:exchange { subject_token = user })
    assert.equal(op.sha256(assert(user:token())), last_exchange().subject_token_sha256)
    -- a type this peer does not take: sent as given, refused by the server
    local r, err = svc:exchange { subject_token = user, subject_token_type = "urn:example:token-type:opaque" }
    assert.is_nil(r)
    assert.equal("invalid_request", err.code)
    assert.equal("urn:example:token-type:opaque", last_exchange().subject_token_type)
  end)

  it("with into = other_account installs the token there: that account's requests carry it", function()
    local a = user_account()
    local store = connkit.store.memory()
    local told
    local b = account({ scope = "api" }, { id = "downstream", store = store,
      on_token = function(_, info) told = info end })
    assert.is_false(b:status().authorized)
    local before = #op.token_requests()
    local r, err = a:exchange { subject_token = "self", into = b, resource = op.resource, scope = "api" }
    assert.is_nil(err)
    assert.is_nil(r.access_token)
    assert.is_nil(r.refresh_token)
    assert.equal("downstream", r.stored_in)
    assert.equal(URN .. "access_token", r.issued_token_type)
    assert.matches("stored_in=downstream", tostring(r), 1, true)
    assert.is_table(told)
    assert.equal("api", told.scope)
    local st = b:status()
    assert.is_true(st.authorized)
    assert.equal("api", st.scope)
    -- b sends the issued token; it went through b's store
    local res = assert(b:get("/api/me"))
    assert.equal(200, res.status)
    assert.equal("tester", res:json().sub)
    local issued = last_exchange().issued_token_sha256
    local seen = op.api_requests()
    assert.equal(issued, seen[#seen].token_sha256)
    assert.equal(issued, op.sha256(store.get("downstream").access_token))
    assert.equal("token_exchange", store.get("downstream").source)
    -- one exchange, and b asked the token endpoint for nothing
    local tr = op.token_requests()
    assert.equal(before + 1, #tr)
    assert.equal(GRANT, tr[#tr].grant_type)
  end)

  it("a refused exchange into an account leaves that account's tokens as they were", function()
    local a = user_account()
    local store = connkit.store.memory()
    local b = user_account { id = "kept", store = store }
    local before_tok, before_rec = assert(b:token()), store.get("kept")
    local r, err = a:exchange { subject_token = "self", into = b, audience = "elsewhere" }
    assert.is_nil(r)
    assert.equal("invalid_target", err.code)
    assert.equal(before_tok, assert(b:token()))
    assert.same(before_rec, store.get("kept"))
    assert.is_true(b:status().has_refresh_token)
    assert.equal(200, assert(b:get("/api/me")).status)
    local seen = op.api_requests()
    assert.equal(op.sha256(before_tok), seen[#seen].token_sha256)
  end)

  it("an exchanged token without a refresh token is never renewed by another grant: reauthorize when it expires", function()
    local a = user_account()
    op.config { access_ttl = 2, cc_ttl = 2 }
    -- a client-credentials account could fetch a token of its own: it must not
    local b = connkit.integration {
      name = "CC", key = "xchcc", auth = "oauth2", base_url = op.issuer,
      oauth2 = { grant_type = "client_credentials", issuer = op.issuer, client_id = CLIENT.id,
        client_secret = CLIENT.secret, scope = "api" },
    }:account {}
    assert(a:exchange { subject_token = "self", into = b, scope = "api" })
    assert.equal(200, assert(b:get("/api/me")).status)
    local before = #op.token_requests()
    require("connkit.core").sleep(3)
    local res, err = b:get("/api/me")
    assert.is_nil(res)
    assert.equal("reauthorize", err.code)
    assert.matches("token exchange", err.message, 1, true)
    assert.matches("exchange again", err.message, 1, true)
    assert.equal(before, #op.token_requests()) -- no client_credentials, no refresh
    local ok, rerr = b:refresh()
    assert.is_nil(ok)
    assert.equal("reauthorize", rerr.code)
    assert.equal("reauthorize", b:status().state)
    -- a new exchange brings it back
    op.config { access_ttl = 3600 }
    assert(a:exchange { subject_token = "self", into = b, scope = "api" })
    assert.equal(200, assert(b:get("/api/me")).status)
  end)

  it("an exchanged refresh token renews the account it was installed into", function()
    local a = user_account()
    local b = account({ scope = "api" }, { id = "renewable" })
    local r = assert(a:exchange { subject_token = "self", into = b, scope = "api offline_access" })
    assert.is_true(r.has_refresh_token)
    assert.is_true(b:status().has_refresh_token)
    local first = assert(b:token())
    op.reset()
    assert(b:refresh())
    local tr = op.token_requests()
    assert.equal(1, #tr)
    assert.equal("refresh_token", tr[1].grant_type)
    assert.equal(200, tr[1].status)
    assert.are_not.equal(first, assert(b:token()))
    assert.equal(200, assert(b:get("/api/me")).status)
  end)

  it("maps the server's refusals to err.code, with the status and no secret", function()
    local a = user_account()
    local subject = assert(a:token())
    local cases = {
      { { subject_token = "self", audience = "elsewhere" }, "invalid_target", 400 },
      { { subject_token = "self", resource = "https://other.test/api" }, "invalid_target", 400 },
      { { subject_token = "self", scope = "write" }, "invalid_scope", 400 },
      { { subject_token = "not-a-token-the-peer-issued" }, "invalid_request", 400 },
      { { subject_token = "self", requested_token_type = "id_token" }, "invalid_request", 400 },
    }
    for _, c in ipairs(cases) do
      local r, err = a:exchange(c[1])
      assert.is_nil(r)
      assert.equal(c[2], err.code)
      assert.equal(c[3], err.status)
      assert.equal(c[2], err.oauth_error)
      assert.equal(c[2], last_exchange().error)
      assert.is_nil(tostring(err):find(subject, 1, true))
    end
    -- a wrong client secret: invalid_client, before the grant runs
    local bad = integration(nil, { id = CLIENT.id, secret = "wrong-secret-value" })
      :account { parameters = { issuer = op.issuer } }
    local before = exchanges().total
    local r, err = bad:exchange { subject_token = subject }
    assert.is_nil(r)
    assert.equal("invalid_client", err.code)
    assert.equal(401, err.status)
    assert.equal(before, exchanges().total)
    assert.is_nil(tostring(err):find(subject, 1, true))
    assert.is_nil(tostring(err):find("wrong-secret-value", 1, true))
    -- a client the server does not allow the grant
    local basic = op.clients.basic
    local other = integration(nil, { id = basic.id, secret = basic.secret }):account { parameters = { issuer = op.issuer } }
    r, err = other:exchange { subject_token = subject }
    assert.is_nil(r)
    assert.equal("invalid_request", err.code)
    assert.matches("not allowed", err.message, 1, true)
  end)

  it("raises for bad options, naming the option, and sends nothing", function()
    local a = user_account()
    local plain = connkit.integration { name = "Plain", key = "xchplain", auth = "api_token", base_url = op.issuer }
      :account { credentials = { token = "t0ken-value" } }
    local b = account()
    local cases = {
      { nil, "options must be a table" },
      { {}, "option 'subject_token' is required" },
      { { subject_tokn = "x" }, "unknown option 'subject_tokn' (did you mean 'subject_token'?)" },
      { { subject_token = 42 }, "option 'subject_token' must be a token" },
      { { subject_token = "" }, "option 'subject_token' must be a token" },
      { { subject_token = "self", subject_token_type = "bogus" }, "option 'subject_token_type' must be a token type URI" },
      { { subject_token = "self", subject_token_type = "" }, "option 'subject_token_type' must not be empty" },
      { { subject_token = "self", actor_token_type = "access_token" }, "option 'actor_token_type' needs actor_token" },
      { { subject_token = "self", actor_token = {} }, "option 'actor_token' must be a token" },
      { { subject_token = "self", requested_token_type = "x y" }, "option 'requested_token_type' must be a token type URI" },
      { { subject_token = "self", resource = "api" }, "option 'resource' must be an absolute URI" },
      { { subject_token = "self", resource = { op.resource, "https://x.test/#f" } }, "option 'resource[2]' must be an absolute URI" },
      { { subject_token = "self", audience = {} }, "option 'audience' must not be an empty list" },
      { { subject_token = "self", audience = { "a", 7 } }, "option 'audience[2]' must be a non-empty string" },
      { { subject_token = "self", audience = { x = "a" } }, "option 'audience' must be a string or a list" },
      { { subject_token = "self", scope = "" }, "option 'scope' must not be empty" },
      { { subject_token = "self", scope = { "api read" } }, "option 'scope[1]' must be one scope token" },
      { { subject_token = "self", into = {} }, "option 'into' must be an account of an oauth2 integration" },
      { { subject_token = "self", into = plain }, "option 'into' must be an account of an oauth2 integration" },
      { { subject_token = "self", into = b, requested_token_type = "id_token" }, "option 'requested_token_type' must be an access token type" },
    }
    for _, c in ipairs(cases) do
      local ok, msg = pcall(a.exchange, a, c[1])
      assert.is_false(ok)
      assert.matches("exchange: " .. c[2], msg, 1, true)
    end
    -- raised at the caller's line
    local ok, msg = pcall(function()
      local r = a:exchange { subject_token = "self", resource = "api" } -- (no tail call: Lua 5.1 would drop this frame)
      return r
    end)
    assert.is_false(ok)
    assert.matches("token_exchange_spec%.lua:%d+: exchange: option 'resource'", msg)
    ok, msg = pcall(plain.exchange, plain, { subject_token = "x" })
    assert.is_false(ok)
    assert.matches('exchange needs auth = "oauth2"', msg, 1, true)
    assert.equal(0, exchanges().total)
    assert.is_false(b:status().authorized)
  end)

  it("a subject that cannot get a token is a run-time error, before any exchange", function()
    local never = account()
    local svc = account()
    local r, err = svc:exchange { subject_token = never }
    assert.is_nil(r)
    assert.equal("reauthorize", err.code)
    assert.matches("^exchange: subject_token: ", err.message)
    assert.equal(0, exchanges().total)
  end)

  it("shows no token or secret in results, errors, hooks, status or the peer's log", function()
    local seen = {}
    local a = user_account { on_request = function(info) seen[#seen + 1] = info end,
      on_response = function(info) seen[#seen + 1] = info end }
    local b = account()
    local subject = assert(a:token())
    local r = assert(a:exchange { subject_token = "self", scope = "api" })
    local r2 = assert(a:exchange { subject_token = "self", into = b, scope = "api" })
    local _, err = a:exchange { subject_token = "self", audience = "elsewhere" }
    local issued, issued2 = r.access_token, assert(b:token())
    local texts = { tostring(r), tostring(r2), tostring(err), err.message, tostring(a), tostring(b) }
    for _, t in ipairs(all_text(r2)) do texts[#texts + 1] = t end
    for _, t in ipairs(all_text(a:status())) do texts[#texts + 1] = t end
    for _, t in ipairs(all_text(b:status())) do texts[#texts + 1] = t end
    for _, t in ipairs(all_text(seen)) do texts[#texts + 1] = t end
    assert.is_true(#seen >= 4) -- the hooks saw the exchange calls
    texts[#texts + 1] = helpers.read_file(op.log) or ""
    local all = table.concat(texts, "\n")
    for _, secret in ipairs({ subject, issued, issued2, CLIENT.secret }) do
      assert.is_nil(all:find(secret, 1, true))
    end
    assert.matches("issued_token_type=" .. URN:gsub("%p", "%%%0") .. "access_token", tostring(r))
    assert.is_nil(tostring(r):find("access_token=", 1, true))
  end)

  it("scrubs the tokens from a server message that echoes them", function()
    local a = user_account()
    local subject = assert(a:token())
    -- the peer's "echo" audience answers with the subject token in its description
    local r, err = a:exchange { subject_token = "self", audience = "echo" }
    assert.is_nil(r)
    assert.equal("invalid_target", err.code)
    assert.matches("***", err.message, 1, true)
    assert.is_nil(err.message:find(subject, 1, true))
    -- a token this account never held before the call
    local svc = connkit.integration {
      name = "Svc", key = "xchecho", auth = "oauth2", base_url = op.issuer,
      oauth2 = { grant_type = "client_credentials", issuer = op.issuer, client_id = CLIENT.id,
        client_secret = CLIENT.secret, scope = "api" },
    }:account {}
    local other = assert(svc:token())
    local _, err2 = a:exchange { subject_token = other, audience = "echo" }
    assert.equal("invalid_target", err2.code)
    assert.is_nil(err2.message:find(other, 1, true))
  end)
end)
