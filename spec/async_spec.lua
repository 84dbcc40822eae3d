-- Non-blocking requests on the shared engine: req:start, connkit.poll,
-- connkit.all (ordering, mixed outcomes), cancel.
local helpers = require "helpers"
local connkit = require "connkit"
local socket = require "socket"

describe("non-blocking requests", function()
  local hb, acct

  setup(function()
    hb = helpers.peer("httpbin")
    acct = connkit.integration {
      name = "Async", key = "async", auth = "api_token", base_url = "{base}", parameters = { "base" },
    }:account { parameters = { base = hb.url }, credentials = { token = "async-tok" } }
  end)

  it("poll(0) returns at once while a request is in flight", function()
    local h = assert(acct:prepare { url = "/delay/2" }):start()
    local slowest, polls = 0, 0
    local t0 = socket.gettime()
    while not h:done() do
      local t = socket.gettime()
      connkit.poll(0)
      slowest = math.max(slowest, socket.gettime() - t)
      polls = polls + 1
      socket.sleep(0.01)
    end
    assert.is_true(socket.gettime() - t0 >= 1.9)
    assert.is_true(polls > 20)
    assert.is_true(slowest < 0.1, "poll(0) blocked for " .. slowest .. " s")
    local res = assert(h:result())
    assert.equal(200, res.status)
    assert.equal("Bearer async-tok", res:json().headers.Authorization)
  end)

  it("all() keeps input order and reports each outcome", function()
    local refused = "http://127.0.0.1:" .. helpers.free_port() .. "/"
    local reqs = {
      assert(acct:prepare { url = "/delay/1", query = { n = 1 } }),
      assert(acct:prepare { url = refused }),
      assert(acct:prepare { url = "/delay/3", timeout = 0.5 }),
      assert(acct:prepare { url = "/status/418" }),
      assert(acct:prepare { url = "/anything", query = { n = 5 } }),
    }
    local t0 = socket.gettime()
    local results = connkit.all(reqs, { concurrency = 5 })
    assert.is_true(socket.gettime() - t0 < 1.9, "requests did not run in parallel")
    assert.equal(5, #results)
    assert.equal("1", results[1].res:json().args.n)
    assert.equal("connect", results[2].err.code)
    assert.equal("timeout", results[3].err.code)
    assert.equal(418, results[4].res.status)
    assert.equal("5", results[5].res:json().args.n)
  end)

  it("all() honours the concurrency limit", function()
    local reqs = {}
    for i = 1, 4 do reqs[i] = assert(acct:prepare { url = "/delay/1", query = { i = i } }) end
    local t0 = socket.gettime()
    local results = connkit.all(reqs, { concurrency = 2 })
    local took = socket.gettime() - t0
    assert.is_true(took >= 1.9 and took < 3.5, "took " .. took)
    for i = 1, 4 do assert.equal(tostring(i), results[i].res:json().args.i) end
  end)

  it("cancel() stops a transfer", function()
    local h = assert(acct:prepare { url = "/delay/3" }):start()
    connkit.poll(0.1)
    h:cancel()
    assert.is_true(h:done())
    local res, err = h:result()
    assert.is_nil(res)
    assert.equal("cancelled", err.code)
  end)

  -- a plain request (static auth, nothing to follow or retry) takes start()'s
  -- short path: one transfer, no steps; the outcome must be the same
  describe("a plain request's handle", function()
    it("gives the reply the peer sent, with attempts = 1", function()
      local h = assert(acct:prepare { url = "/anything/plain", query = { n = 7 } }):start()
      local t0 = socket.gettime()
      while not h:done() do
        connkit.poll(0.05)
        assert.is_true(socket.gettime() - t0 < 10, "the handle never finished")
      end
      local res, err = h:result()
      assert.is_nil(err)
      assert.equal(200, res.status)
      assert.equal(1, res.attempts)
      local echo = res:json()
      assert.equal("7", echo.args.n)
      assert.equal("Bearer async-tok", echo.headers.Authorization)
      assert.equal(res, (h:result())) -- asked again: the same reply
      assert.is_true(h:done())
    end)

    it("fails with the request's error and attempts = 1, result() waiting for it", function()
      local port = helpers.free_port()
      local h = assert(acct:prepare { url = "http://127.0.0.1:" .. port .. "/x" }):start()
      local res, err = h:result() -- not polled first: result() drives the engine
      assert.is_nil(res)
      assert.equal("connect", err.code)
      assert.equal(1, err.attempts)
      assert.truthy(err.message:find("GET http://127.0.0.1:" .. port .. "/x", 1, true), err.message)
      assert.is_true(h:done())
    end)

    it("cancel() ends it with code cancelled and attempts = 1, and the transfer stops", function()
      local h = assert(acct:prepare { url = "/delay/3" }):start()
      connkit.poll(0.1)
      local t0 = socket.gettime()
      h:cancel()
      assert.is_true(h:done())
      local res, err = h:result()
      assert.is_true(socket.gettime() - t0 < 1, "result() waited for a cancelled transfer")
      assert.is_nil(res)
      assert.equal("cancelled", err.code)
      assert.equal(1, err.attempts)
      h:cancel() -- again: nothing happens
      assert.equal(0, require("connkit.transport").curl.pending())
    end)

    it("keeps its reply when cancel() comes after done()", function()
      local h = assert(acct:prepare { url = "/anything/kept" }):start()
      while not h:done() do connkit.poll(0.05) end
      h:cancel()
      local res, err = h:result()
      assert.is_nil(err)
      assert.equal("/anything/kept", res:json().url:match("/anything/kept"))
    end)

    it("a request whose token changed after prepare goes out with the new token", function()
      local a = connkit.integration {
        name = "AsyncTok", key = "asynctok", auth = "api_token", base_url = "{base}", parameters = { "base" },
      }:account { parameters = { base = hb.url }, credentials = { token = "old-tok" } }
      local req = assert(a:prepare { url = "/headers" })
      assert(a:_set_token("new-tok"))
      local res = assert(req:start():result())
      assert.equal("Bearer new-tok", res:json().headers.Authorization)
    end)

    it("runs beside other handles in connkit.all, each reply the peer's", function()
      -- a mixed batch (one request follows redirects) runs as handles
      local reqs = {
        assert(acct:prepare { url = "/anything/a" }),
        assert(acct:prepare { url = "/redirect-to", query = { url = "/anything/b" }, follow = true }),
        assert(acct:prepare { url = "http://127.0.0.1:" .. helpers.free_port() .. "/" }),
      }
      local results = connkit.all(reqs, { concurrency = 3 })
      assert.equal("/anything/a", results[1].res:json().url:match("/anything/a"))
      assert.equal("/anything/b", results[2].res:json().url:match("/anything/b"))
      assert.equal("connect", results[3].err.code)
      assert.equal(1, results[3].err.attempts)
    end)
  end)
end)
