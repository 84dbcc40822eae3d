-- Wrong options are errors: every public function refuses a misspelled
-- option, a string where a number belongs, a nested table where a value
-- belongs, a negative and an absurd (more than a day) timeout, with a
-- message naming the option, raised at the caller's line (never a line
-- inside connkit).
local helpers = require "helpers"
local connkit = require "connkit"

local INTERNAL = "connkit/[%w_/]+%.lua:%d+"
local KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" -- base64 of 32 bytes

-- The message of the error `f` raises (asserting it raises a string that
-- points at no connkit line: at this file, or nowhere).
local function raised(f)
  local ok, err = pcall(f)
  assert.is_false(ok, "expected an error")
  assert.is_string(err)
  assert.not_matches(INTERNAL, err)
  local where = err:match("^([^:]+%.lua):%d+:")
  if where then assert.matches("options_spec%.lua$", where) end
  return err
end

describe("options", function()
  local api = connkit.integration {
    name = "Options", key = "options", auth = "api_token", base_url = "http://127.0.0.1:9/api",
  }
  local acct = api:account { credentials = { token = "tok-options" } }
  local idp = connkit.integration {
    name = "Options IdP", key = "optionsidp", auth = "oauth2", base_url = "http://127.0.0.1:9/api",
    oauth2 = {
      grant_type = "authorization_code", client_id = "c", client_auth = "none",
      authorize_url = "http://127.0.0.1:9/auth", token_url = "http://127.0.0.1:9/token",
      device_authorization_url = "http://127.0.0.1:9/device",
    },
  }
  local user = idp:account { id = "options-user" }
  local dir = helpers.tmpdir("options")
  teardown(function() helpers.execute("rm -rf " .. helpers.shell_quote(dir)) end)

  local function with(t, extra)
    local o = {}
    for k, v in pairs(extra or {}) do o[k] = v end
    for k, v in pairs(t) do o[k] = v end
    return o
  end

  -- name -> { call = function(opts), option = the checked option, misspelt =
  -- that option misspelt, timeout = true when it is a timeout, base = options
  -- every call needs }
  local FUNCTIONS = {
    ["account:request"] = { call = function(o) return acct:request(with(o, { url = "/x" })) end, option = "timeout", misspelt = "timout", timeout = true },
    ["account:prepare"] = { call = function(o) return acct:prepare(with(o, { url = "/x" })) end, option = "timeout", misspelt = "tiemout", timeout = true },
    ["account:get"] = { call = function(o) return acct:get("/x", o) end, option = "max_body", misspelt = "max_bdy" },
    ["account:post"] = { call = function(o) return acct:post("/x", o) end, option = "timeout", misspelt = "timeuot", timeout = true },
    ["account:put"] = { call = function(o) return acct:put("/x", o) end, option = "follow", misspelt = "folow" },
    ["account:patch"] = { call = function(o) return acct:patch("/x", o) end, option = "timeout", misspelt = "Timeout", timeout = true },
    ["account:delete"] = { call = function(o) return acct:delete("/x", o) end, option = "timeout", misspelt = "timeot", timeout = true },
    ["account:head"] = { call = function(o) return acct:head("/x", o) end, option = "query", misspelt = "qeury" },
    ["connkit.all"] = { call = function(o) return connkit.all({}, o) end, option = "concurrency", misspelt = "concurency" },
    ["connkit.store.file"] = { call = function(o) return connkit.store.file(dir, with(o, { key = KEY })) end,
      option = "lock_timeout", misspelt = "lock_timout", timeout = true },
    ["account:authorize_url"] = { call = function(o) return user:authorize_url(with(o, { redirect_uri = "http://127.0.0.1:1/cb" })) end,
      option = "scope", misspelt = "scop" },
    ["account:login"] = { call = function(o) return user:login(o) end, option = "timeout", misspelt = "timout", timeout = true },
    ["account:login_device"] = { call = function(o) return user:login_device(o) end, option = "timeout", misspelt = "timout", timeout = true },
    ["integration:account"] = { call = function(o) return api:account(with(o, { credentials = { token = "t" } })) end,
      option = "timeout", misspelt = "timout", timeout = true },
  }

  for name, f in pairs(FUNCTIONS) do
    describe(name, function()
      it("refuses a misspelled option, naming it and the one meant", function()
        local err = raised(function() f.call { [f.misspelt] = 5 } end)
        assert.matches(f.misspelt, err, 1, true)
        assert.matches("'" .. f.option .. "'", err, 1, true)
      end)

      it("refuses a value of the wrong type, naming the option", function()
        local err = raised(function() f.call { [f.option] = name == "account:authorize_url" and 42 or "1MB" } end)
        assert.matches(f.option, err, 1, true)
      end)

      it("refuses a nested table where a value belongs, naming the option", function()
        local err = raised(function() f.call { [f.option] = { 5 } } end)
        assert.matches(f.option, err, 1, true)
      end)

      if f.timeout then
        it("refuses a negative timeout, naming the option", function()
          local err = raised(function() f.call { [f.option] = -1 } end)
          assert.matches(f.option, err, 1, true)
        end)

        it("refuses a timeout of more than a day, naming the option", function()
          local err = raised(function() f.call { [f.option] = 86401 } end)
          assert.matches(f.option, err, 1, true)
          assert.matches("day", err, 1, true)
        end)
      end
    end)
  end

  it("connkit.poll refuses a timeout that is not a number, negative or absurd", function()
    for _, bad in ipairs({ "1", { 1 }, -1, 1e6, 0 / 0 }) do
      assert.matches("timeout", raised(function() connkit.poll(bad) end), 1, true)
    end
    assert.is_number(connkit.poll(0))
  end)

  it("connkit.store.memory takes no options", function()
    assert.matches("unknown option 'lock_timeout'", raised(function() connkit.store.memory { lock_timeout = 1 } end), 1, true)
    assert.matches("options must be a table", raised(function() connkit.store.memory("x") end), 1, true)
  end)

  it("a request method called with a dot instead of a colon says so", function()
    assert.matches("account:get(...), with a colon", raised(function() acct.get("/x") end), 1, true)
    assert.matches("account:prepare(...), with a colon", raised(function() acct.prepare { url = "/x" } end), 1, true)
    assert.matches("account:request(...), with a colon", raised(function() acct.request { url = "/x" } end), 1, true)
  end)

  it("finish_authorization refuses what is not a callback URL or query", function()
    assert.matches("finish_authorization", raised(function() user:finish_authorization { code = "x" } end), 1, true)
  end)

  it("request values: nested tables, non-finite numbers, bad sizes and bodies name the option", function()
    local cases = {
      { { query = { a = { b = 1 } } }, "query.a" },
      { { query = { a = { { 1 } } } }, "query.a[1]" },
      { { query = { a = 0 / 0 } }, "query.a" },
      { { form = { a = { b = 1 } }, method = "POST" }, "form.a" },
      { { headers = { ["X-A"] = { "x" } } }, "headers.X-A" },
      { { headers = { ["X A"] = "x" } }, "headers.X A" },
      { { vars = { id = { 1 } }, url = "/x/{id}" }, "vars.id" },
      { { max_body = "1MB" }, "max_body" },
      { { max_body = -1 }, "max_body" },
      { { max_body = 0.5 }, "max_body" },
      { { max_body = 2 ^ 60 }, "max_body" },
      { { follow = "yes" }, "follow" },
      { { follow = -1 }, "follow" },
      { { retry = 3 }, "retry" },
      { { json = { f = print } }, "json" },
      { { json = 0 / 0 }, "json" },
      { { body = 42 }, "body" },
      { { method = 5 }, "method" },
      { { method = "GET /x" }, "method" },
      { { url = 5 }, "url" },
      { { url = false }, "url" },
    }
    for _, c in ipairs(cases) do
      local err = raised(function() acct:request(with(c[1], { url = "/x" })) end)
      assert.matches(c[2], err, 1, true)
    end
    -- the shortcuts give url and method themselves
    assert.matches("'method'", raised(function() acct:get("/x", { method = "POST" }) end), 1, true)
  end)

  it("connkit.all refuses a concurrency below 1 or not whole, and a list that is not one", function()
    assert.matches("concurrency", raised(function() connkit.all({}, { concurrency = 0 }) end), 1, true)
    assert.matches("concurrency", raised(function() connkit.all({}, { concurrency = 2.5 }) end), 1, true)
    assert.matches("requests must be a list", raised(function() connkit.all("x") end), 1, true)
    assert.matches("item 1", raised(function() connkit.all({ {} }) end), 1, true)
  end)

  it("empty credentials are refused at account creation, naming them", function()
    local basic = connkit.integration { name = "B", key = "optbasic", auth = "basic", base_url = "http://127.0.0.1:9/" }
    local cases = {
      { api, { token = "" }, "credentials.token" },
      { basic, { username = "u", password = "" }, "credentials.password" },
      { basic, { username = "", password = "p" }, "credentials.username" },
      { idp, { client_secret = "" }, "credentials.client_secret" },
    }
    for _, c in ipairs(cases) do
      local err = raised(function() c[1]:account { credentials = c[2] } end)
      assert.matches(c[3], err, 1, true)
      assert.matches("empty", err, 1, true)
    end
  end)

  it("account and integration timeouts of more than a day are refused", function()
    assert.matches("timeout", raised(function()
      connkit.integration { name = "T", key = "optt", auth = "none", base_url = "http://127.0.0.1:9/", timeout = 90000 }
    end), 1, true)
    assert.matches("connect_timeout", raised(function()
      connkit.integration { name = "T", key = "optt", auth = "none", base_url = "http://127.0.0.1:9/", connect_timeout = -1 }
    end), 1, true)
  end)

  it("connkit.load refuses a path that is not a string and a definition with an absurd timeout", function()
    assert.matches("path", raised(function() connkit.load({ "x.json" }) end), 1, true)
    local path = dir .. "/def.json"
    helpers.write_file(path, '{"name": "L", "key": "optload", "auth": "none", "base_url": "http://127.0.0.1:9/", "timeout": 1e9}')
    assert.matches("timeout", raised(function() connkit.load(path) end), 1, true)
  end)

  it("an error raised from a helper deep inside connkit still points at the caller", function()
    -- login -> authorize_url -> url encoding: four connkit frames deep
    local err = raised(function() user:login { params = { a = { b = 1 } }, port = 0 } end)
    assert.matches("params.a", err, 1, true)
    assert.matches("^[^:]*options_spec%.lua:%d+:", err)
  end)
end)
