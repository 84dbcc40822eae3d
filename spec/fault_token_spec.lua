-- Fault matrix of token endpoints: OAuth 2.0 client credentials and a
-- custom token login, both on the scripted peer (spec/scripted/server.js)
-- behind the fault proxy. An account that has a valid token meets a fault
-- on its refresh: refresh() fails in time (the account's timeout, faults.TIMEOUT, plus
-- faults.BOUND) with a documented code, the old token is kept and still
-- used (the peer's /resource sees it), and once the fault is gone the next
-- refresh gets a new token. An account with no token meets the fault in the
-- token fetch of a request (or of a handle): the request's timeout covers it.
local connkit = require "connkit"
local helpers = require "helpers"
local faults = require "support.faults"
local socket = require "socket"
local engine = require("connkit.transport.curl").engine

local TIMEOUT = faults.TIMEOUT
local ACCOUNT_TIMEOUT = TIMEOUT + faults.BOUND + 0.3
local CLIENT_SECRET = "cc-fault:5e3b9a71d04c"
faults.secret(CLIENT_SECRET)

local sp, fp -- the scripted peer, the fault proxy
local n = 0

-- The token replies are ~290 bytes with ~180 of headers: cut mid-body;
-- 100 bytes/s makes one take ~3 s.
local ARGS = { reset = 200, cut = 200, bandwidth = 100 }

local KINDS = {
  { "client_credentials", function(token_base, opts)
    n = n + 1
    return connkit.integration {
      name = "Fault CC " .. n, key = "faultcc" .. n, auth = "oauth2",
      base_url = "{base}", parameters = { base = { required = true }, tokenbase = { required = true } },
      oauth2 = { grant_type = "client_credentials", token_url = "{tokenbase}/token/ok?ttl=3600",
        client_id = "fault-client", client_secret = CLIENT_SECRET },
    }:account { parameters = { base = sp.url, tokenbase = token_base }, timeout = opts.timeout }
  end },
  { "custom_token", function(token_base, opts)
    n = n + 1
    faults.secret(sp.login.password)
    return connkit.integration {
      name = "Fault custom " .. n, key = "faultct" .. n, auth = "custom_token",
      base_url = "{base}", parameters = { base = { required = true }, tokenbase = { required = true } },
      custom_token = { token_url = "{tokenbase}/login?ttl=600", token_method = "POST",
        params = { user = "{username}", password = "{password}" },
        token_path = "data.token", expires_in_path = "data.ttl" },
    }:account { parameters = { base = sp.url, tokenbase = token_base }, timeout = opts.timeout,
      credentials = { username = sp.login.user, password = sp.login.password } }
  end },
}

local function bearer_of(r) return (r.headers.authorization or ""):match("^Bearer (.+)$") end

local function token(acct)
  local t = assert(acct:token())
  faults.secret(t)
  return t
end

-- The account uses `want` for /resource, and /resource accepts it.
local function assert_uses(acct, want)
  local res, err = acct:get("/resource", { timeout = 5 })
  assert(res, err and err.message)
  assert.equal(200, res.status)
  assert.equal(want, bearer_of(sp.last("/resource")))
end

local EXPECT = {
  latency = { "timeout" }, bandwidth = { "timeout" }, stall = { "timeout" },
  stall_headers = { "timeout" }, drip = { "timeout" }, reset = { "network" }, cut = { "network" },
  cut_headers = { "network" },
}

setup(function()
  sp = helpers.peer("scripted")
  fp = helpers.peer("faultproxy")
end)

teardown(function()
  faults.write("token", "token endpoints x faults (scripted peer behind the fault proxy; timeout " .. TIMEOUT .. " s)")
end)

for _, k in ipairs(KINDS) do
  local kind, make = k[1], k[2]

  describe("fault matrix: " .. kind .. " refresh()", function()
    for _, f in ipairs(faults.FAULTS) do
      local fault, fkind, arg = f[1], f[2], ARGS[f[1]] or f[3]
      it(fault .. ": fails in time, keeps and uses the old token; the next refresh works", function()
        local port = fp.listen(sp.port, "none")
        local acct = make("http://127.0.0.1:" .. port, { timeout = TIMEOUT })
        faults.message(acct)
        local old = token(acct)
        fp.set(port, fkind, arg)
        local elapsed, ok, err = faults.timed(acct.refresh, acct)
        faults.record(kind .. " refresh()", fault, elapsed, err)
        faults.message(err)
        if faults.HARMLESS[fault] then
          assert(ok, err and err.message)
          local new = token(acct)
          assert.not_equal(old, new)
          assert_uses(acct, new)
        else
          faults.assert_failure(kind .. " refresh x " .. fault, elapsed, TIMEOUT, ok, err, EXPECT[fault])
          assert.equal(old, token(acct))        -- kept, and still valid
          assert.is_true(acct:status().authorized)
          assert_uses(acct, old)                -- and used
          fp.set(port, "none")
          assert(acct:refresh())
          local new = token(acct)
          assert.not_equal(old, new)
          assert_uses(acct, new)
        end
        assert.equal(0, engine:pending())
      end)
    end
  end)

  -- No token yet: the fetch is part of the request, so its timeout bounds
  -- it, not the account's (ACCOUNT_TIMEOUT: past the bound, to show which
  -- one applies).
  -- (handles: client credentials only; custom token takes the same path)
  for _, call in ipairs(kind == "client_credentials" and { "request", "start+poll" } or { "request" }) do
    describe("fault matrix: " .. kind .. " fetch in " .. call, function()
      for _, f in ipairs(faults.FAULTS) do
        local fault, fkind, arg = f[1], f[2], ARGS[f[1]] or f[3]
        it(fault .. ": the request's timeout covers the token fetch", function()
          local port = fp.listen(sp.port, fkind, arg)
          local acct = make("http://127.0.0.1:" .. port, { timeout = ACCOUNT_TIMEOUT })
          faults.message(acct)
          local elapsed, res, err = faults.timed(function()
            if call == "request" then return acct:get("/resource", { timeout = TIMEOUT }) end
            local h = assert(acct:prepare { url = "/resource", timeout = TIMEOUT }):start()
            while not h:done() do connkit.poll(0.05) end
            return h:result()
          end)
          faults.record(kind .. " fetch, " .. call, fault, elapsed, err)
          faults.message(err)
          if faults.HARMLESS[fault] then
            assert(res, err and err.message)
            assert.equal(200, res.status)
            assert.equal(token(acct), bearer_of(sp.last("/resource")))
          else
            faults.assert_failure(kind .. " fetch x " .. fault, elapsed, TIMEOUT, res, err, EXPECT[fault])
            assert.is_false(acct:status().authorized)
          end
          -- (a new account: this one waits `refresh.cooldown` before it asks again)
          fp.set(port, "none")
          local again = make("http://127.0.0.1:" .. port, { timeout = 5 })
          assert_uses(again, token(again))
          -- the request stopped at its deadline, but the account's token request
          -- goes on for other callers: it must end by the account's own
          -- timeout (connkit.poll drives it), leaving nothing in flight
          local t0 = socket.gettime()
          while engine:pending() > 0 and socket.gettime() - t0 < ACCOUNT_TIMEOUT + faults.BOUND do
            connkit.poll(0.05)
          end
          assert.equal(0, engine:pending())
        end)
      end
    end)
  end
end

describe("fault matrix: secrets", function()
  it("no message of the run holds a secret or 4+ characters of one", function()
    assert.same({}, faults.leaks())
  end)
end)
