-- Retries: backoff with jitter, Retry-After (seconds and HTTP date), caps,
-- idempotent methods only by default, per-request rules; attempts counted
-- on the server side.
local helpers = require "helpers"
local connkit = require "connkit"
local retry = require "connkit.http.retry"
local socket = require "socket"

describe("retries", function()
  local sp, n = nil, 0
  local function key() n = n + 1 return "k" .. n .. "-" .. os.time() end

  local function account(rules, base)
    return connkit.integration {
      name = "Flaky", key = "flaky", auth = "none", base_url = "{base}", parameters = { "base" }, retry = rules,
    }:account { parameters = { base = base or sp.url } }
  end

  setup(function() sp = helpers.peer("scripted") end)

  it("retries 503 with backoff until it succeeds", function()
    local k = key()
    local acct = account { max = 3, statuses = { 503 }, base = 0.05 }
    local res = assert(acct:get("/flaky", { query = { key = k, fail = 2 } }))
    assert.equal(200, res.status)
    assert.equal(3, res.attempts)
    assert.equal(3, sp.attempts(k))
  end)

  it("gives the last reply back when the retries run out", function()
    local k = key()
    local acct = account { max = 2, statuses = { 503 }, base = 0.01 }
    local res = assert(acct:get("/flaky", { query = { key = k, fail = 10 } }))
    assert.equal(503, res.status)
    assert.equal(3, res.attempts)
    assert.equal(3, sp.attempts(k))
  end)

  it("does not retry POST unless the rules name it", function()
    local k = key()
    local res = assert(account({ max = 3, statuses = { 503 }, base = 0.01 }):post("/flaky", { query = { key = k, fail = 1 }, body = "x" }))
    assert.equal(503, res.status)
    assert.equal(1, res.attempts)
    assert.equal(1, sp.attempts(k))
    k = key()
    res = assert(account({ max = 3, statuses = { 503 }, base = 0.01, methods = { "POST" } })
      :post("/flaky", { query = { key = k, fail = 1 }, body = "x" }))
    assert.equal(200, res.status)
    assert.equal(2, sp.attempts(k))
  end)

  it("honours Retry-After in seconds", function()
    local k = key()
    local t0 = socket.gettime()
    local res = assert(account({ max = 2, statuses = { 429 } }):get("/ratelimit", { query = { key = k, fail = 1, retry_after = 1 } }))
    local took = socket.gettime() - t0
    assert.equal(200, res.status)
    assert.equal(2, res.attempts)
    assert.equal(2, sp.attempts(k))
    assert.is_true(took >= 0.95 and took < 2.5, "took " .. took)
  end)

  it("honours Retry-After as an HTTP date", function()
    local k = key()
    local t0 = socket.gettime()
    local res = assert(account({ max = 2, statuses = { 429 } }):get("/ratelimit", { query = { key = k, fail = 1, retry_after = 2, date = 1 } }))
    assert.equal(200, res.status)
    assert.equal(2, sp.attempts(k))
    assert.is_true(socket.gettime() - t0 >= 0.9)
    assert.equal(90, retry.retry_after("Sun, 06 Nov 1994 08:51:07 GMT", 784111777))
    assert.equal(0, retry.retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111800))
    assert.equal(5, retry.retry_after(" 5 "))
    assert.is_nil(retry.retry_after("soon"))
  end)

  it("does not wait longer than max_wait: the reply comes back instead", function()
    local k = key()
    local t0 = socket.gettime()
    local res = assert(account({ max = 3, statuses = { 429 }, max_wait = 1 }):get("/ratelimit", { query = { key = k, fail = 1, retry_after = 30 } }))
    assert.equal(429, res.status)
    assert.equal(1, res.attempts)
    assert.is_true(socket.gettime() - t0 < 1)
  end)

  it("retries refused connections of idempotent methods only", function()
    local dead = "http://127.0.0.1:" .. helpers.free_port()
    local acct = account({ max = 2, base = 0.01 }, dead)
    local res, err = acct:get("/x")
    assert.is_nil(res)
    assert.equal("connect", err.code)
    assert.equal(3, err.attempts)
    res, err = acct:post("/x", { body = "x" })
    assert.equal(1, err.attempts)
  end)

  it("takes per-request rules over the integration's, and false for none", function()
    local k = key()
    local plain = account(nil)
    local res = assert(plain:get("/flaky", { query = { key = k, fail = 1 }, retry = { max = 1, statuses = { 503 }, base = 0.01 } }))
    assert.equal(200, res.status)
    assert.equal(2, sp.attempts(k))
    k = key()
    res = assert(account({ max = 3, statuses = { 503 }, base = 0.01 }):get("/flaky", { query = { key = k, fail = 1 }, retry = false }))
    assert.equal(503, res.status)
    assert.equal(1, sp.attempts(k))
    assert.has_error(function() plain:get("/x", { retry = { max = -1 } }) end)
  end)

  it("retries 429 from httpbin too", function()
    local hb = helpers.peer("httpbin")
    local res = assert(account({ max = 2, statuses = { 429 }, base = 0.01 }, hb.url):get("/status/429"))
    assert.equal(429, res.status)
    assert.equal(3, res.attempts)
  end)

  it("retries without blocking in start()/poll()", function()
    local k = key()
    local acct = account { max = 3, statuses = { 503 }, base = 0.2 }
    local h = assert(acct:prepare { url = "/flaky", query = { key = k, fail = 2 } }):start()
    local slowest, ticks = 0, 0
    while not h:done() do
      local t = socket.gettime()
      connkit.poll(0)
      slowest = math.max(slowest, socket.gettime() - t)
      ticks = ticks + 1
      socket.sleep(0.005)
    end
    local res = assert(h:result())
    assert.equal(200, res.status)
    assert.equal(3, res.attempts)
    assert.equal(3, sp.attempts(k))
    assert.is_true(ticks > 10)
    assert.is_true(slowest < 0.1)
  end)
end)
