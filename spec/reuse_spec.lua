-- What prepare and the replies share to stay light (issue 16): a prepared
-- request reuses the last wire spec of its account only when it would read
-- the same fields into C (lua/connkit/http/request.lua, wire_of), and a
-- reply reuses the engine's last header block and small body string only
-- when the bytes are the same (csrc/http.c, push_reused). Requests that
-- differ in one field, and replies of the same length with other bytes,
-- each go out and come back as their own; asserted against what httpbin saw
-- and sent.
local helpers = require "helpers"
local connkit = require "connkit"

describe("sharing between requests and replies", function()
  local hb, acct

  setup(function()
    hb = helpers.peer("httpbin")
    local api = connkit.integration {
      name = "Echo", key = "echo", auth = "api_token", base_url = "{base}",
      parameters = { base = { required = true } },
      auth_token = { type = "header", name = "Authorization", value = "Bearer {token}" },
    }
    acct = api:account { parameters = { base = hb.url }, credentials = { token = "t-1" } }
  end)

  it("shares the wire spec of requests that read the same, and only those", function()
    local a = assert(acct:prepare { url = "/anything/aa" })
    local b = assert(acct:prepare { url = "/anything/aa" })
    assert.is_true(rawequal(rawget(a, "_wire"), rawget(b, "_wire")))
    local variants = {
      assert(acct:prepare { url = "/anything/bb" }),                      -- same length, other bytes
      assert(acct:prepare { method = "DELETE", url = "/anything/bb" }),   -- other method
      assert(acct:prepare { url = "/anything/bb", query = { q = "1" } }), -- query
      assert(acct:prepare { url = "/anything/bb", headers = { ["X-Own"] = "1" } }),
      assert(acct:prepare { url = "/anything/bb" }),                      -- none of those again
    }
    for i = 2, #variants do
      assert.is_false(rawequal(rawget(variants[i - 1], "_wire"), rawget(variants[i], "_wire")), "variant " .. i)
    end
    local results = connkit.all(variants, { concurrency = 2 })
    local seen = {}
    for i, r in ipairs(results) do seen[i] = assert(r.res, tostring(r.err)):json() end
    assert.equal(hb.url .. "/anything/bb", seen[1].url)
    assert.equal("GET", seen[1].method)
    assert.equal("DELETE", seen[2].method)
    assert.equal(hb.url .. "/anything/bb?q=1", seen[3].url)
    assert.equal("1", seen[4].headers["X-Own"])
    assert.is_nil(seen[5].headers["X-Own"])
    assert.equal("GET", seen[5].method)
    assert.equal(hb.url .. "/anything/bb", seen[5].url)
    for i = 1, 5 do assert.equal("Bearer t-1", seen[i].headers.Authorization, "item " .. i) end
  end)

  it("gives a request with its own timeout its own spec", function()
    local plain = assert(acct:prepare { url = "/delay/1" })
    local short = assert(acct:prepare { url = "/delay/1", timeout = 0.3 })
    local again = assert(acct:prepare { url = "/delay/1" })
    local results = connkit.all({ plain, short, again }, { concurrency = 3 })
    assert.equal(200, results[1].res and results[1].res.status)
    assert.equal("timeout", results[2].err and results[2].err.code)
    assert.equal(200, results[3].res and results[3].res.status)
  end)

  it("gives each reply its own headers and body when they differ", function()
    -- header blocks and bodies of the same length with other bytes, in a row
    local reqs, want = {}, {}
    for i = 1, 12 do
      local v = tostring(i % 3)
      reqs[i] = assert(acct:prepare { url = "/response-headers", query = { ["X-Echo"] = "v" .. v } })
      want[i] = "v" .. v
    end
    local results = connkit.all(reqs, { concurrency = 2 })
    for i, r in ipairs(results) do
      local res = assert(r.res, tostring(r.err))
      assert.equal(want[i], res.headers["x-echo"], "item " .. i)
      assert.equal(want[i], res:json()["X-Echo"], "item " .. i)
    end
    local b64 = { aaaa = "YWFhYQ==", bbbb = "YmJiYg==", aaab = "YWFhYg==" }
    for i, s in ipairs { "aaaa", "bbbb", "bbbb", "aaab", "aaaa" } do
      local res = assert(acct:get("/base64/" .. b64[s]))
      assert.equal(s, res.body, "body " .. i)
    end
  end)
end)
