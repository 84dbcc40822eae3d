-- Errors behave like strings where users treat them so ("failed: " .. err,
-- tostring, print, an uncaught error), and no message, raised or returned,
-- carries a position inside connkit (lua/connkit/*.lua:NN or csrc/*.c:NN).
local helpers = require "helpers"
local connkit = require "connkit"
local errors = require "connkit.errors"

local INTERNAL = "connkit/[%w_/]+%.lua:%d+"
local C_POSITION = "csrc/[%w_]+%.[ch]:%d+"

local function no_internal_position(msg)
  assert.is_string(msg)
  assert.not_matches(INTERNAL, msg)
  assert.not_matches(C_POSITION, msg)
  local where = msg:match("^([^:]+%.lua):%d+:")
  if where then assert.matches("errors_spec%.lua$", where) end
end

describe("errors", function()
  it("concatenate like strings, on either side", function()
    local err = errors.new("timeout", "GET http://127.0.0.1:9/x: timed out")
    assert.equal("failed: GET http://127.0.0.1:9/x: timed out", "failed: " .. err)
    assert.equal("GET http://127.0.0.1:9/x: timed out!", err .. "!")
    assert.equal("1: GET http://127.0.0.1:9/x: timed out", 1 .. ": " .. err)
    assert.equal(err.message .. err.message, err .. err)
    assert.equal(err.message, tostring(err))
    assert.has_error(function() return err .. {} end)
  end)

  it("print, tostring and an uncaught error show the message", function()
    local script = [[
      io.stdout:setvbuf("no")
      local connkit = require "connkit"
      local acct = connkit.integration { name = "E", key = "e", auth = "none", base_url = "http://127.0.0.1:PORT/" }:account {}
      local res, err = acct:get("/x")
      print(err)
      print("failed: " .. err)
      io.write(tostring(err), "\n")
      error(err)
    ]]
    local port = helpers.free_port()
    local env = "env" -- (under make test-asan the child needs the sanitizer runtimes too)
    for k, v in pairs(helpers.child_env()) do env = env .. " " .. k .. "=" .. helpers.shell_quote(v) end
    local ok, out = helpers.run(env .. " " .. helpers.lua .. " -e " .. helpers.shell_quote(script:gsub("PORT", tostring(port))))
    assert.is_false(ok) -- the uncaught error
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.matches("^GET http://127%.0%.0%.1:" .. port .. "/x: ", lines[1])
    assert.equal("failed: " .. lines[1], lines[2])
    assert.equal(lines[1], lines[3])
    assert.matches(lines[1]:gsub("%p", "%%%0"), out) -- the interpreter's report of error(err)
    assert.not_matches("table: 0x", out)
  end)

  it("errors.new takes internal positions out of a caught message", function()
    local e = errors.new("store", "store.get failed: /usr/share/lua/5.4/connkit/store/file.lua:120: boom")
    assert.equal("store.get failed: boom", e.message)
    e = errors.new("x", "./lua/connkit/url.lua:48: attempt to index a nil value; csrc/http.c:12: y")
    assert.equal("attempt to index a nil value; y", e.message)
    -- a position in the user's own code stays: it helps
    e = errors.new("store", "store.get failed: /srv/app/mystore.lua:7: db down")
    assert.equal("store.get failed: /srv/app/mystore.lua:7: db down", e.message)
  end)

  describe("messages carry no position inside connkit", function()
    local hb
    setup(function() hb = helpers.peer("httpbin") end)

    local function integ(extra)
      local def = { name = "E", key = "errs", auth = "api_token", base_url = "{base}",
        parameters = { base = { required = true } } }
      for k, v in pairs(extra or {}) do def[k] = v end
      return connkit.integration(def)
    end

    it("for misuse raised from deep inside", function()
      local acct = integ():account { parameters = { base = hb.url }, credentials = { token = "t" } }
      local idp = connkit.integration {
        name = "IdP", key = "errsidp", auth = "oauth2", base_url = "http://127.0.0.1:9/",
        oauth2 = { grant_type = "authorization_code", client_id = "c", client_auth = "none",
          authorize_url = "http://127.0.0.1:9/auth", token_url = "http://127.0.0.1:9/token" },
      }
      local user = idp:account {}
      local misuse = {
        function() acct:get("/x", { query = { a = { b = 1 } } }) end,
        function() acct:prepare { url = "/x", headers = { ["X-A"] = { 1 } } } end,
        function() acct:request { url = "/x", json = { f = print } } end,
        function() acct:get(42) end,
        function() acct.get("/x") end,
        function() acct.prepare { url = "/x" } end,
        function() connkit.all({ {} }) end,
        function() connkit.all({}, { concurrency = "x" }) end,
        function() connkit.poll("soon") end,
        function() connkit.store.file("/nonexistent-dir-for-errors-spec/x", { key = "short" }) end,
        function() connkit.store.memory():put("id", { f = print }) end,
        function() connkit.store.memory().get(5) end,
        function() connkit.store.check({}) end,
        function() user:authorize_url { redirect_uri = "http://127.0.0.1:1/cb", params = { a = { 1, { 2 } } } } end,
        function() user:login { params = { a = { b = 1 } } } end,
        function() user:login_device {} end,
        function() acct:authorize_url {} end,
        function() acct:sftp() end,
        function() integ().account({}, {}) end,
        function() integ():account { parameters = { base = hb.url }, credentials = { token = "" } } end,
        function() connkit.load(42) end,
      }
      for i, f in ipairs(misuse) do
        local ok, err = pcall(f)
        assert.is_false(ok, "misuse " .. i .. " did not raise")
        no_internal_position(err)
      end
    end)

    it("for failures returned as nil, err", function()
      local port = helpers.free_port()
      local down = integ():account { parameters = { base = "http://127.0.0.1:" .. port }, credentials = { token = "t" } }
      local acct = integ():account { parameters = { base = hb.url }, credentials = { token = "t" } }
      local failures = {
        { down:get("/x") },
        { acct:get("/x/{nope}") },
        { acct:get("/x", { headers = { ["X-A"] = "a\r\nB: c" } }) },
        { acct:get("/delay/3", { timeout = 0.3 }) },
        { acct:get("/bytes/2048", { max_body = 100 }) },
        { assert(acct:get("/html")):json() },
      }
      -- a store that fails with a Lua error inside connkit's own code
      local idp = connkit.integration {
        name = "IdP", key = "errsstore", auth = "oauth2", base_url = "http://127.0.0.1:9/",
        oauth2 = { grant_type = "client_credentials", client_id = "c", client_secret = "s",
          token_url = "http://127.0.0.1:" .. port .. "/token" },
      }
      local broken = {
        get = function() return nil end,
        put = function() return true end,
        lock = function() return require("connkit.http.url").origin(nil) end, -- raises inside connkit
      }
      local svc = idp:account { store = broken }
      failures[#failures + 1] = { svc:token() }
      for i, r in ipairs(failures) do
        local res, err = r[1], r[2]
        assert.is_nil(res, "failure " .. i .. " did not fail")
        assert.is_string(err.code)
        no_internal_position(err.message)
        no_internal_position(tostring(err))
      end
    end)
  end)
end)
