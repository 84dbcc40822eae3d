-- res.url of every reply, while the engine reuses the string of the last
-- reply's URL when the next one has the same bytes (csrc/http.c, push_url):
-- URLs of the same length but other bytes, and batches that mix them, each
-- get their own. Asserted against the URL httpbin saw.
local helpers = require "helpers"
local connkit = require "connkit"

describe("res.url", function()
  local hb, acct

  setup(function()
    hb = helpers.peer("httpbin")
    local api = connkit.integration {
      name = "Echo", key = "echo", auth = "api_token", base_url = "{base}",
      parameters = { base = { required = true } },
    }
    acct = api:account { parameters = { base = hb.url }, credentials = { token = "t-1" } }
  end)

  -- the same length, other bytes: only a byte-wise check tells them apart
  local paths = { "/anything/aa", "/anything/bb", "/anything/bb", "/anything/aa", "/anything/ab" }

  it("is each request's own URL, one request after another", function()
    for i, p in ipairs(paths) do
      local res = assert(acct:get(p))
      assert.equal(200, res.status)
      assert.equal(hb.url .. p, res.url, "request " .. i)
      assert.equal(res.url, res:json().url, "request " .. i)
    end
  end)

  it("is each request's own URL in connkit.all and from handles", function()
    local reqs = {}
    for i = 1, 20 do reqs[i] = assert(acct:prepare { method = "GET", url = paths[(i % #paths) + 1] }) end
    local results = connkit.all(reqs, { concurrency = 3 })
    for i, r in ipairs(results) do
      local want = hb.url .. paths[(i % #paths) + 1]
      assert.equal(want, r.res.url, "item " .. i)
      assert.equal(want, r.res:json().url, "item " .. i)
    end
    local h1, h2 = reqs[1]:start(), reqs[2]:start()
    assert.equal(hb.url .. paths[3], (assert(h2:result())).url)
    assert.equal(hb.url .. paths[2], (assert(h1:result())).url)
  end)
end)
