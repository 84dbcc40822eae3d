-- Regression specs for issue 10, defects 1 to 3, against the scripted peer
-- (assertions on what it received):
--  1. a token reply whose access token holds CR/LF is refused before it is
--     stored; a stored record that cannot be used is stale, not a permanent
--     failure (file store, new account objects, new processes);
--  2. excerpts of a reply (error_description, a body snippet) are scrubbed
--     before they are cut: no prefix of a secret straddling the cut shows;
--  3. every custom-token credential is a secret unless declared public.
local helpers = require "helpers"
local connkit = require "connkit"
local core = require "connkit.core"

local sp
local n = 0

-- No prefix of 4 or more characters of any secret in the message.
local function assert_no_prefix(message, secrets)
  for _, s in ipairs(secrets) do
    assert.is_nil(message:find(s:sub(1, 4), 1, true),
      ("a prefix of a secret shows in: %q"):format(message))
  end
end

local function bearer_of(r) return (r.headers.authorization or ""):match("^Bearer (.+)$") end

describe("a token reply holding CR/LF (defect 1)", function()
  local dir, key

  local function cc_integration(token_path)
    n = n + 1
    return connkit.integration {
      name = "CRLF " .. n, key = "crlf" .. n, auth = "oauth2",
      base_url = "{base}", parameters = { base = { required = true } },
      refresh = { cooldown = 0 },
      oauth2 = { grant_type = "client_credentials", token_url = "{base}" .. token_path,
        client_id = "crlf-client", client_secret = "crlf-s3cret-value" },
    }
  end

  setup(function()
    sp = helpers.peer("scripted")
    dir = helpers.tmpdir("crlf") .. "/tokens"
    key = core.b64encode(core.random(32))
  end)
  before_each(function() sp.reset() end)

  it("is refused with a clear code, never stored, and the next fetch works", function()
    local integ = cc_integration("/token/crlf-first?key=a")
    local store = connkit.store.file(dir, { key = key })
    local acct = integ:account { id = "crlf-a", parameters = { base = sp.url }, store = store }
    local res, err = acct:get("/resource")
    assert.is_nil(res)
    assert.equal("token_endpoint", err.code)
    assert.matches("CR, LF or NUL", err.message)
    assert.equal(0, #sp.requests("/resource"))          -- nothing sent with it
    assert.is_nil(store.get("crlf-a"))                   -- not written
    assert.is_false(acct:status().authorized)

    -- the endpoint heals: the next request fetches a good token and works
    res = assert(acct:get("/resource"))
    assert.equal(200, res.status)
    assert.equal(2, #sp.requests("/token/crlf-first"))
    local rec = assert(store.get("crlf-a"))
    assert.is_nil(rec.access_token:find("[\r\n]"))
    assert.equal(rec.access_token, bearer_of(sp.last("/resource")))
    assert.is_nil(sp.last("/resource").headers["x-injected"])

    -- a new account object on a new store object over the same directory
    local again = integ:account { id = "crlf-a", parameters = { base = sp.url },
      store = connkit.store.file(dir, { key = key }) }
    assert.equal(200, assert(again:get("/resource")).status)
    assert.equal(2, #sp.requests("/token/crlf-first")) -- it used the stored one
  end)

  it("in the store (written by an older version) is stale: a new token is fetched", function()
    local integ = cc_integration("/token/ok")
    local store = connkit.store.file(dir, { key = key })
    store.put("crlf-b", { access_token = "tok-bad\r\nX-Injected: 1", token_type = "bearer",
      issued_at = core.now(), expires_at = core.now() + 3600 })
    local acct = integ:account { id = "crlf-b", parameters = { base = sp.url }, store = store }
    local res = assert(acct:get("/resource"))
    assert.equal(200, res.status)
    assert.equal(1, #sp.requests("/token/ok"))
    assert.is_nil(sp.last("/resource").headers["x-injected"])
    local rec = assert(store.get("crlf-b"))
    assert.is_nil(rec.access_token:find("[\r\n]"))      -- replaced by the good one
  end)

  it("in the store keeps its refresh token usable (authorization code)", function()
    n = n + 1
    local integ = connkit.integration {
      name = "CRLF code " .. n, key = "crlfcode" .. n, auth = "oauth2",
      base_url = "{base}", parameters = { base = { required = true } },
      oauth2 = { token_url = "{base}/token/ok", authorize_url = "{base}/authorize",
        client_id = "crlf-client", client_secret = "crlf-s3cret-value" },
    }
    local store = connkit.store.file(dir, { key = key })
    store.put("crlf-c", { access_token = "tok-bad\nX", refresh_token = "rt-stored-0123",
      token_type = "bearer", issued_at = core.now(), expires_at = core.now() + 3600 })
    local acct = integ:account { id = "crlf-c", parameters = { base = sp.url }, store = store }
    assert.is_true(acct:status().has_refresh_token)
    assert.equal(200, assert(acct:get("/resource")).status)
    local tr = sp.last("/token/ok")
    assert.equal("refresh_token", tr.form.grant_type)
    assert.equal("rt-stored-0123", tr.form.refresh_token)
    assert.is_nil(assert(store.get("crlf-c")).access_token:find("[\r\n]"))
  end)

  it("leaves a new process on the same store working", function()
    local integ = cc_integration("/token/crlf-first?key=p")
    local store = connkit.store.file(dir, { key = key })
    local acct = integ:account { id = "crlf-p", parameters = { base = sp.url }, store = store }
    local _, err = acct:token()
    assert.equal("token_endpoint", err.code)
    assert.is_nil(store.get("crlf-p"))
    local script = helpers.tmpdir("crlfchild") .. "/child.lua"
    helpers.write_file(script, ([[
      local connkit = require "connkit"
      local acct = connkit.integration {
        name = "CRLF child", key = "crlfchild", auth = "oauth2",
        base_url = %q, oauth2 = { grant_type = "client_credentials", token_url = %q,
          client_id = "crlf-client", client_secret = "crlf-s3cret-value" },
      }:account { id = "crlf-p", store = connkit.store.file(%q, { key = %q }) }
      local res, e = acct:get("/resource")
      print(res and ("status=" .. res.status) or ("error=" .. e.code))
    ]]):format(sp.url, sp.url .. "/token/crlf-first?key=p", dir, key))
    local child = helpers.spawn("crlfchild", helpers.lua .. " " .. helpers.shell_quote(script),
      { env = helpers.child_env() })
    for _ = 1, 200 do
      if not helpers.alive(child.pid) then break end
      require("socket").sleep(0.05)
    end
    assert.matches("status=200", helpers.read_file(child.log) or "", 1, true)
    assert.is_nil(assert(store.get("crlf-p")).access_token:find("[\r\n]"))
  end)
end)

describe("excerpts of a token reply (defect 2)", function()
  local SECRET = "Zq7wSECRETvalue-0123456789abcdef"

  local function echo_account(query)
    n = n + 1
    return connkit.integration {
      name = "Echo " .. n, key = "echo" .. n, auth = "oauth2",
      base_url = "{base}", parameters = { base = { required = true } },
      oauth2 = { grant_type = "client_credentials", token_url = "{base}/token/echo?" .. query,
        client_id = "echo-client", client_auth = "post" },
    }:account { parameters = { base = sp.url }, credentials = { client_secret = SECRET } }
  end

  setup(function() sp = helpers.peer("scripted") end)

  -- error_description is cut at 200 characters, a body snippet at 60
  for _, case in ipairs({
    { "error_description", "mode=desc", 200, "invalid_client" },
    { "body snippet", "mode=body", 60, "token_endpoint" },
  }) do
    local what, mode, cut, code = case[1], case[2], case[3], case[4]
    for _, before in ipairs({ 4, 10, 25 }) do
      it(("of a %s hide a secret straddling the cut (%d characters before it)"):format(what, before), function()
        local acct = echo_account(("field=client_secret&%s&at=%d"):format(mode, cut - before))
        local _, err = acct:token()
        assert.equal(code, err.code)
        -- the server did echo it
        assert.equal(SECRET, sp.last("/token/echo").form.client_secret)
        assert.matches("xxxx", err.message)
        assert_no_prefix(err.message, { SECRET })
        assert_no_prefix(tostring(err), { SECRET })
      end)
    end
  end

  it("of an authorization response's error_description hide a secret straddling the cut", function()
    n = n + 1
    local acct = connkit.integration {
      name = "Echo code " .. n, key = "echocode" .. n, auth = "oauth2",
      base_url = "{base}", parameters = { base = { required = true } },
      oauth2 = { token_url = "{base}/token/ok", authorize_url = "{base}/authorize",
        client_id = "echo-client" },
    }:account { parameters = { base = sp.url }, credentials = { client_secret = SECRET } }
    local url = acct:authorize_url { redirect_uri = "http://127.0.0.1/cb" }
    local state = url:match("[?&]state=([^&]+)")
    local desc = ("y"):rep(195) .. SECRET
    local _, err = acct:finish_authorization("?state=" .. state .. "&error=access_denied&error_description="
      .. core.escape(desc, "query"))
    assert.equal("access_denied", err.code)
    assert.matches("yyyy", err.message)
    assert_no_prefix(err.message, { SECRET })
  end)
end)

describe("errors.excerpt", function()
  local errors = require "connkit.errors"

  it("replaces a secret that begins before the cut whole, and cuts in the text as it came", function()
    local text = ("a"):rep(8) .. "S3CRETxyz" .. ("b"):rep(20)
    local s, cut = errors.excerpt(text, 10, { "S3CRETxyz" })
    assert.equal(("a"):rep(8) .. "***", s)
    assert.is_true(cut)
    -- shrinking by a replacement pulls nothing from beyond the cut in
    s = errors.excerpt("S3CRETxyz" .. "cc" .. "T0KENabcdef", 13, { "S3CRETxyz", "T0KENabcdef" })
    assert.equal("***cc***", s)
    s = errors.excerpt("S3CRETxyz" .. "cc" .. "T0KENabcdef", 12, { "S3CRETxyz", "T0KENabcdef" })
    assert.equal("***cc***", s)
    -- overlapping secrets, and a text without any
    assert.equal("x***y", (errors.excerpt("xABCDEFGHy", 20, { "ABCDEF", "DEFGH" })))
    local plain, c2 = errors.excerpt("short", 60, { "S3CRETxyz" })
    assert.equal("short", plain)
    assert.is_false(c2)
  end)

  it("C error messages are not cut (a long path keeps its end)", function()
    local dir = helpers.tmpdir("longmsg")
    local path = dir .. "/" .. ("d"):rep(200) .. "/" .. ("e"):rep(200) .. "/" .. ("f"):rep(200) .. "/END-0f-PATH"
    local data, code, msg = core.read_file(path)
    assert.is_nil(data)
    assert.equal("not_found", code)
    assert.is_true(#msg > 600)
    assert.matches("END-0f-PATH", msg, 1, true)
  end)
end)

describe("custom-token credentials (defect 3)", function()
  local API_KEY = "Kx9pAPIKEY-fedcba9876543210"

  local function custom(params, credentials, query, extra)
    n = n + 1
    local ct = { token_url = "{base}/token/echo?" .. query, params = params }
    for k, v in pairs(extra or {}) do ct[k] = v end
    return connkit.integration {
      name = "Custom echo " .. n, key = "customecho" .. n, auth = "custom_token",
      base_url = "{base}", parameters = { base = { required = true } },
      custom_token = ct,
    }:account { parameters = { base = sp.url }, credentials = credentials }
  end

  setup(function() sp = helpers.peer("scripted") end)

  it("with any name are secrets: an echoing endpoint shows none of them", function()
    for _, mode in ipairs({ "mode=desc", "mode=body&at=40" }) do
      local acct = custom({ key = "{apiKey}" }, { apiKey = API_KEY }, "field=key&" .. mode)
      local _, err = acct:token()
      assert.equal(API_KEY, sp.last("/token/echo").form.key)
      assert_no_prefix(err.message, { API_KEY })
    end
  end)

  it("named username are not secrets (they help reading a message)", function()
    local acct = custom({ user = "{username}", key = "{apiKey}" },
      { username = "someone-visible", apiKey = API_KEY }, "field=user")
    local _, err = acct:token()
    assert.matches("someone-visible", err.message, 1, true)
  end)

  it("declared in custom_token.public_credentials are not secrets; the others are", function()
    local acct = custom({ tenant = "{tenant}", key = "{apiKey}", user = "{username}" },
      { tenant = "tenant-visible", apiKey = API_KEY, username = "user-hidden-now" }, "field=tenant",
      { public_credentials = { "tenant" } })
    local _, err = acct:token()
    assert.matches("tenant-visible", err.message, 1, true)
    -- declaring replaces the default: username is a secret here
    acct = custom({ tenant = "{tenant}", user = "{username}" },
      { tenant = "tenant-visible", username = "user-hidden-now" }, "field=user",
      { public_credentials = { "tenant" } })
    _, err = acct:token()
    assert.equal("user-hidden-now", sp.last("/token/echo").form.user)
    assert_no_prefix(err.message, { "user-hidden-now" })
  end)

  it("public_credentials must name credentials the definition uses", function()
    assert.has_error(function()
      connkit.integration {
        name = "Custom bad", key = "custombad", auth = "custom_token",
        custom_token = { token_url = "https://login.acme.test/t", params = { key = "{apiKey}" },
          public_credentials = { "apikey" } },
      }
    end, nil)
    local ok, msg = pcall(connkit.integration, {
      name = "Custom bad", key = "custombad", auth = "custom_token",
      custom_token = { token_url = "https://login.acme.test/t", params = { key = "{apiKey}" },
        public_credentials = { "apikey" } },
    })
    assert.is_false(ok)
    assert.matches("custom_token.public_credentials", tostring(msg), 1, true)
  end)
end)
