-- Callers inside a token renewal (a store callback, on_token) are
-- re-entrant and keep their behaviour: waiting for the renewal would be
-- waiting for themselves. Outside OpenResty nothing else can call in while
-- a renewal runs, so a running renewal is never waited for there (issue 11
-- point 3 changes that only inside nginx: nginx_store_spec.lua). Against
-- the scripted peer's token endpoint and /resource.
local helpers = require "helpers"
local connkit = require "connkit"
local core = require "connkit.core"

local sp
local n = 0

local function account(opts)
  n = n + 1
  local integ = connkit.integration {
    name = "Reentry " .. n, key = "reentry" .. n, auth = "oauth2",
    base_url = "{base}", parameters = { base = { required = true } },
    oauth2 = { grant_type = "client_credentials", token_url = "{base}/token/ok?ttl=3600",
      client_id = "reentry-client", client_secret = "reentry:s3cret" },
  }
  opts.parameters = { base = sp.url }
  return integ:account(opts)
end

-- A memory store whose put calls `during_put` first.
local function store_with_put_hook(during_put)
  local s = connkit.store.memory()
  return { get = s.get, lock = s.lock, put = function(id, rec)
    during_put()
    return s.put(id, rec)
  end }
end

local function outcome(res, err)
  return { status = res and res.status, code = err and err.code, message = err and err.message }
end

local function froms()
  local list = {}
  for _, r in ipairs(sp.requests("/resource")) do list[#list + 1] = r.query.from end
  table.sort(list)
  return list
end

describe("a call from inside a token renewal", function()
  setup(function() sp = helpers.peer("scripted") end)
  before_each(function() sp.reset() end)

  it("from a store callback, before the new token is in use: 'refresh' at once, as before", function()
    local seen, acct
    acct = account { store = store_with_put_hook(function()
      local t0 = core.now()
      seen = outcome(acct:get("/resource", { query = { from = "put" }, timeout = 5 }))
      seen.took = core.now() - t0
    end) }
    local res, err = acct:get("/resource", { query = { from = "main" } })
    assert.are.equal(200, res and res.status, err and err.message)
    assert.is_nil(seen.status)
    assert.are.equal("refresh", seen.code)
    assert.matches("a token refresh is already under way", seen.message, 1, true)
    assert.is_true(seen.took < 0.5)
    assert.are.equal(1, #sp.requests("/token/ok"))
    assert.are.same({ "main" }, froms())
  end)

  it("from a coroutine of the callback's own: the same (never a wait outside OpenResty)", function()
    local seen, acct
    acct = account { store = store_with_put_hook(function()
      local t0 = core.now()
      coroutine.wrap(function()
        seen = outcome(acct:get("/resource", { query = { from = "put" }, timeout = 5 }))
      end)()
      seen.took = core.now() - t0
    end) }
    local res = acct:get("/resource", { query = { from = "main" } })
    assert.are.equal(200, res and res.status)
    assert.are.equal("refresh", seen.code)
    assert.is_true(seen.took < 0.5)
    assert.are.equal(1, #sp.requests("/token/ok"))
  end)

  it("from on_token, after the new token is in use: the call goes through with it", function()
    local seen
    local acct = account { on_token = function(a)
      local t0 = core.now()
      seen = outcome(a:get("/resource", { query = { from = "hook" } }))
      seen.took = core.now() - t0
    end }
    local res = acct:get("/resource", { query = { from = "main" } })
    assert.are.equal(200, res and res.status)
    assert.are.equal(200, seen.status, seen.message)
    assert.are.equal(1, #sp.requests("/token/ok"))
    assert.are.same({ "hook", "main" }, froms())
  end)
end)
