-- Fault matrix of the loopback login listener (account:login, RFC 8252):
-- the "browser" is a misbehaving client of the fault proxy
-- (spec/peers/faultproxy.js, /client) that brings the right callback
-- (code and state) but connects and stalls, drips it, cuts it, resets it,
-- slices it into 1-byte writes or closes late. A callback that arrives whole
-- (slice, slow close) completes the login (the scripted token endpoint gets
-- the code); any other ends in `timeout` within login's timeout (faults.TIMEOUT) plus
-- faults.BOUND, the listener is closed, and the engine takes the next request.
local connkit = require "connkit"
local helpers = require "helpers"
local socket = require "socket"
local faults = require "support.faults"
local engine = require("connkit.transport.curl").engine

local TIMEOUT = faults.TIMEOUT
local CLIENT_SECRET = "Lg0n-Fx:7a6c0e29b3"
faults.secret(CLIENT_SECRET)

local sp, fp
local n = 0

local function account()
  n = n + 1
  local acct = connkit.integration {
    name = "Fault login " .. n, key = "faultlogin" .. n, auth = "oauth2",
    base_url = "{base}", parameters = { base = { required = true } },
    oauth2 = { grant_type = "authorization_code", authorize_url = "{base}/authorize",
      token_url = "{base}/token/ok?ttl=3600", client_id = "login-client", client_secret = CLIENT_SECRET },
  }:account { parameters = { base = sp.url } }
  faults.message(acct)
  return acct
end

local function refused(port)
  local c = socket.tcp()
  c:settimeout(1)
  local ok = c:connect("127.0.0.1", port)
  c:close()
  return not ok
end

-- the callback is ~90 bytes: cut inside it, 20 bytes/s take 4.5 s
local ARGS = { reset = 20, cut = 20, cut_headers = 5, bandwidth = 20 }

setup(function()
  sp = helpers.peer("scripted")
  fp = helpers.peer("faultproxy")
end)

teardown(function()
  faults.write("login", "loopback login listener x misbehaving browser (login timeout " .. TIMEOUT .. " s)")
end)

describe("fault matrix: login listener", function()
  for _, f in ipairs(faults.FAULTS) do
    local fault, kind, arg = f[1], f[2], ARGS[f[1]] or f[3]
    local whole = faults.HARMLESS[fault]
    it(fault .. (whole and ": the callback gets through" or ": login ends in time with timeout"), function()
      local acct = account()
      local port = helpers.free_port()
      local code = "c0de-" .. fault
      local function on_url(url)
        local state = assert(url:match("[?&]state=([^&]+)"))
        for _, p in pairs(acct._pending or {}) do faults.secret(p.verifier) end
        fp.client(port, kind, arg, ("GET /callback?code=%s&state=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n")
          :format(code, state, port))
      end
      local elapsed, ok, err = faults.timed(acct.login, acct, { port = port, timeout = TIMEOUT, on_url = on_url })
      faults.record("login", fault, elapsed, err)
      faults.message(err)
      if whole then
        assert(ok, err and err.message)
        local t = sp.last("/token/ok")
        assert.equal(code, t.form.code)
        assert.equal("authorization_code", t.form.grant_type)
        assert.is_true(acct:status().authorized)
        faults.secret(acct:token())
      else
        faults.assert_failure("login x " .. fault, elapsed, TIMEOUT, ok, err, { "timeout" })
        assert.is_false(acct:status().authorized)
      end
      assert.is_true(refused(port), "the listener is still open")
      -- the engine is usable: a request to the peer succeeds, nothing in flight
      local res = assert(connkit.integration { name = "after", key = "after" .. n, auth = "none",
        base_url = sp.url }:account {}:get("/status?code=204", { timeout = 5 }))
      assert.equal(204, res.status)
      assert.equal(0, engine:pending())
    end)
  end
end)

describe("fault matrix: login listener, a stalled client first", function()
  -- Any local process can connect to the listener; one that connects and
  -- says nothing must not keep the browser's callback out until the login
  -- times out.
  it("the browser's callback behind it still completes the login", function()
    local acct = account()
    local port = helpers.free_port()
    local wait = TIMEOUT * 4
    local function on_url(url)
      local state = assert(url:match("[?&]state=([^&]+)"))
      fp.client(port, "stall", nil, "")
      -- the browser comes 0.2 s later, well within the login's timeout
      fp.client(port, "latency", 200, ("GET /callback?code=c0de-behind&state=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n")
        :format(state, port))
    end
    local elapsed, ok, err = faults.timed(acct.login, acct, { port = port, timeout = wait, on_url = on_url })
    faults.record("login", "stalled client first", elapsed, err)
    faults.message(err)
    assert(ok, err and err.message)
    assert.equal("c0de-behind", sp.last("/token/ok").form.code)
    assert.is_true(elapsed < wait)
  end)
end)

describe("fault matrix: secrets", function()
  it("no message of the run holds a secret or 4+ characters of one", function()
    assert.same({}, faults.leaks())
  end)
end)
