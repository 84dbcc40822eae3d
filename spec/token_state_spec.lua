-- Token state where a newcomer slips (issue 9 point 12, token parts): a
-- token reply whose expires_in is not a number is an error naming the field
-- (a numeric string is fine); an authorization-code account that was never
-- authorized says "not authorized yet"; a client-credentials or custom-token
-- account whose store record cannot be read (a tampered file) fetches a
-- token of its own, says so in status(), and leaves the file alone.
-- Against the scripted peer; assertions on what it received.
local helpers = require "helpers"
local connkit = require "connkit"
local core = require "connkit.core"

local sp
local n = 0

local function cc_account(token_path, opts)
  n = n + 1
  opts = opts or {}
  opts.parameters = { base = sp.url }
  return connkit.integration {
    name = "Token state " .. n, key = "tokstate" .. n, auth = "oauth2",
    base_url = "{base}", parameters = { base = { required = true } },
    oauth2 = { grant_type = "client_credentials", token_url = "{base}" .. token_path,
      client_id = "state-client", client_secret = "state:s3cret" },
  }:account(opts)
end

local function custom_account(token_path, expires_in_path, opts)
  n = n + 1
  opts = opts or {}
  opts.parameters = { base = sp.url }
  opts.credentials = { username = "alice" }
  return connkit.integration {
    name = "Token state custom " .. n, key = "tokstatect" .. n, auth = "custom_token",
    base_url = "{base}", parameters = { base = { required = true } },
    custom_token = { token_url = "{base}" .. token_path, params = { user = "{username}" },
      expires_in_path = expires_in_path },
  }:account(opts)
end

local function bearer_of(r) return (r.headers.authorization or ""):match("^Bearer (.+)$") end

describe("expires_in in a token reply", function()
  setup(function() sp = helpers.peer("scripted") end)
  before_each(function() sp.reset() end)

  local bad = {
    { "a word", "/token/expires-raw?v=abc", "non%-numeric string" },
    { "an empty string", "/token/expires-raw?v=", "non%-numeric string" },
    { "a table", "/token/expires-raw?json=%7B%22s%22%3A60%7D", "table" },
    { "a boolean", "/token/expires-raw?json=true", "boolean" },
  }
  for _, case in ipairs(bad) do
    it("that is " .. case[1] .. " is an error naming the field", function()
      local acct = cc_account(case[2])
      local t, err = acct:token()
      assert.is_nil(t)
      assert.equal("token_endpoint", err.code)
      assert.matches("expires_in is not a number", err.message)
      assert.matches(case[3], err.message)
      assert.equal(1, #sp.requests("/token/expires-raw"))
      assert.is_false(acct:status().authorized)
      -- nothing goes to the API with a token of unknown life
      local res, rerr = acct:get("/resource")
      assert.is_nil(res)
      assert.equal("token_endpoint", rerr.code)
      assert.equal(0, #sp.requests("/resource"))
    end)
  end

  it("that is a numeric string is accepted", function()
    local acct = cc_account("/token/expires-raw?v=%207200%20")
    local t = assert(acct:token())
    local left = acct:status().expires_in
    assert.is_true(left > 7190 and left <= 7200, "expires_in " .. tostring(left))
    assert.equal(200, assert(acct:get("/resource")).status)
    assert.equal(t, bearer_of(sp.last("/resource")))
  end)

  it("at a custom token's expires_in_path, when not a number, is an error naming the path", function()
    local acct = custom_account("/token/expires-raw?v=soon", "expires_in")
    local t, err = acct:token()
    assert.is_nil(t)
    assert.equal("token_endpoint", err.code)
    assert.matches("custom token endpoint reply: expires_in is not a number", err.message, 1, true)
    assert.equal("alice", sp.last("/token/expires-raw").form.user)
    local ok = custom_account("/token/expires-raw?v=120", "expires_in")
    assert(ok:token())
    assert.is_true(ok:status().expires_in <= 120)
  end)
end)

describe("an authorization-code account", function()
  setup(function() sp = helpers.peer("scripted") end)
  before_each(function() sp.reset() end)

  local function code_account(store)
    n = n + 1
    return connkit.integration {
      name = "Never " .. n, key = "never" .. n, auth = "oauth2",
      base_url = "{base}", parameters = { base = { required = true } },
      oauth2 = { token_url = "{base}/token/ok", authorize_url = "{base}/authorize",
        client_id = "state-client", client_secret = "state:s3cret" },
    }:account { id = "never", parameters = { base = sp.url }, store = store }
  end

  it("never authorized says so, and asks nobody for a token", function()
    local acct = code_account()
    local t, err = acct:token()
    assert.is_nil(t)
    assert.equal("reauthorize", err.code)
    assert.matches("is not authorized yet", err.message, 1, true)
    assert.is_nil(err.message:find("refresh token", 1, true))
    local res, rerr = acct:get("/resource")
    assert.is_nil(res)
    assert.equal("reauthorize", rerr.code)
    assert.matches("not authorized yet", rerr.message, 1, true)
    assert.equal(0, #sp.requests("/token/ok"))
    assert.equal(0, #sp.requests("/resource"))
    assert.is_false(acct:status().authorized)
  end)

  it("with an expired token and no refresh token says that", function()
    local store = connkit.store.memory()
    store.put("never", { access_token = "at-old", issued_at = os.time() - 7200, expires_at = os.time() - 5 })
    local t, err = code_account(store):token()
    assert.is_nil(t)
    assert.equal("reauthorize", err.code)
    assert.matches("has no refresh token", err.message, 1, true)
    assert.equal(0, #sp.requests("/token/ok"))
  end)
end)

describe("a record the file store cannot read", function()
  setup(function() sp = helpers.peer("scripted") end)
  before_each(function() sp.reset() end)

  local kinds = {
    { "client credentials", function(store) return cc_account("/token/ok", { id = "t", store = store }) end, "/token/ok" },
    { "custom token", function(store) return custom_account("/token/ok", nil, { id = "t", store = store }) end, "/token/ok" },
  }
  for _, kind in ipairs(kinds) do
    it("(a tampered file) makes a " .. kind[1] .. " account fetch a token and say so", function()
      local dir = helpers.tmpdir("tamper")
      local key = core.b64encode(core.random(32))
      local store = connkit.store.file(dir, { key = key })
      local first = kind[2](store)
      assert(first:token())
      local path
      for f in (select(2, helpers.run("ls " .. dir)) or ""):gmatch("[^\n]+") do
        if f:find("%.rec$") then path = dir .. "/" .. f end
      end
      local bytes = helpers.read_file(path)
      local tampered = bytes:sub(1, 30) .. string.char((bytes:byte(31) + 1) % 256) .. bytes:sub(32)
      helpers.write_file(path, tampered)
      sp.reset()
      local acct = kind[2](connkit.store.file(dir, { key = key }))
      assert.equal("store_auth", acct:status().store_error.code)
      local t = assert(acct:token())
      assert.equal(1, #sp.requests(kind[3]))
      assert.equal(200, assert(acct:get("/resource")).status)
      assert.equal(t, bearer_of(sp.last("/resource")))
      assert.equal("store_auth", acct:status().store_error.code)
      -- the tampered file is left as it was
      assert.equal(tampered, helpers.read_file(path))
      -- once the record reads again, the error is gone
      helpers.write_file(path, bytes)
      assert(acct:refresh())
      assert.is_nil(acct:status().store_error)
      assert.are_not.equal(bytes, helpers.read_file(path))
    end)
  end
end)
