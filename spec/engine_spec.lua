-- The transfer engine reuses easy handles and skips the options a handle
-- already has: nothing of one request may leak into the next. Asserted on
-- what the peers received.
local helpers = require "helpers"
local connkit = require "connkit"

describe("the transfer engine", function()
  local hb, ng, acct

  setup(function()
    hb = helpers.peer("httpbin")
    ng = helpers.peer("nginx")
    local api = connkit.integration {
      name = "Echo", key = "echo", auth = "api_token", base_url = "{base}",
      parameters = { base = { required = true } },
      request_parameters = { headers = { ["X-Region"] = "eu" } },
    }
    acct = api:account { parameters = { base = hb.url }, credentials = { token = "t-1" } }
  end)

  it("sends each request as asked after other methods ran on the same handle", function()
    local steps = {
      { opts = { method = "POST", url = "/anything/a", json = { n = 1 }, headers = { ["X-Once"] = "yes" } },
        method = "POST", path = "/anything/a", data = '{"n":1}', once = "yes", ctype = "application/json" },
      { opts = { method = "GET", url = "/anything/b" }, method = "GET", path = "/anything/b", data = "" },
      { opts = { method = "PUT", url = "/anything/c", form = { k = "v" } },
        method = "PUT", path = "/anything/c", form = "v", ctype = "application/x-www-form-urlencoded" },
      { opts = { method = "GET", url = "/anything/b", query = { q = "1" } }, method = "GET", path = "/anything/b", data = "" },
      { opts = { method = "DELETE", url = "/anything/d" }, method = "DELETE", path = "/anything/d", data = "" },
      { opts = { method = "GET", url = "/anything/b" }, method = "GET", path = "/anything/b", data = "" },
    }
    for i, step in ipairs(steps) do
      local res = assert(acct:request(step.opts))
      assert.equal(200, res.status)
      local got = res:json()
      assert.equal(step.method, got.method, "step " .. i)
      assert.equal(hb.url .. step.path, got.url:match("^[^?]*"), "step " .. i)
      assert.equal("Bearer t-1", got.headers.Authorization, "step " .. i)
      assert.equal("eu", got.headers["X-Region"], "step " .. i)
      assert.equal(step.once, got.headers["X-Once"], "step " .. i)
      assert.equal(step.ctype, got.headers["Content-Type"], "step " .. i)
      if step.form then assert.equal(step.form, got.form.k, "step " .. i)
      else assert.equal(step.data, got.data, "step " .. i) end
      if step.opts.query then assert.equal("1", got.args.q) else assert.is_nil(got.args.q, "step " .. i) end
    end
    -- a HEAD leaves no "no body" behind: the next GET has its body
    local head = assert(acct:head("/anything/h"))
    assert.equal(200, head.status)
    assert.equal("", head.body)
    local after = assert(acct:get("/anything/after-head"))
    assert.equal("GET", after:json().method)
  end)

  it("decodes gzip and deflate replies, asking for them with Accept-Encoding", function()
    for _, enc in ipairs { "gzip", "deflate" } do
      local res = assert(acct:get("/" .. enc))
      assert.equal(200, res.status)
      assert.equal(enc, res.headers["content-encoding"]) -- as the server sent it
      local got = res:json() -- the decoded body
      assert.is_true(got[enc == "gzip" and "gzipped" or "deflated"])
      local ae = got.headers["Accept-Encoding"] -- what httpbin received
      assert.truthy(ae and ae:find("gzip", 1, true) and ae:find("deflate", 1, true), tostring(ae))
      assert.equal(1, select(2, ae:gsub("gzip", "")), ae) -- one header, not two
    end
    -- a request without header lines asks too
    local plain = connkit.integration { name = "Plain", key = "plain", auth = "none" }:account {}
    local got = assert(plain:get(hb.url .. "/gzip")):json()
    assert.is_true(got.gzipped)
    assert.truthy(got.headers["Accept-Encoding"]:find("gzip", 1, true))
  end)

  it("keeps the raw body with decompress = false, and sends no Accept-Encoding", function()
    local raw = assert(acct:get("/gzip", { decompress = false }))
    assert.equal("gzip", raw.headers["content-encoding"])
    assert.equal("\31\139", raw.body:sub(1, 2)) -- gzip's magic bytes
    assert.equal(tonumber(raw.headers["content-length"]), #raw.body)
    -- after a redirect too
    raw = assert(acct:get("/redirect-to?url=/gzip", { decompress = false, follow = true }))
    assert.equal(1, raw.redirects)
    assert.equal("\31\139", raw.body:sub(1, 2))
    local got = assert(acct:get("/anything/raw", { decompress = false })):json()
    assert.is_nil(got.headers["Accept-Encoding"])
    -- the caller's own header goes out as given, decoding or not
    got = assert(acct:get("/anything/own", { decompress = false, headers = { ["Accept-Encoding"] = "identity" } })):json()
    assert.equal("identity", got.headers["Accept-Encoding"])
    got = assert(acct:get("/anything/own", { headers = { ["accept-encoding"] = "gzip" } })):json()
    assert.equal("gzip", got.headers["Accept-Encoding"])
    local res = assert(acct:get("/gzip", { headers = { ["Accept-Encoding"] = "gzip" } }))
    assert.equal("gzip", res:json().headers["Accept-Encoding"]) -- decoded all the same
    local err = select(2, pcall(acct.get, acct, "/anything", { decompress = "no" }))
    assert.matches("decompress", err, 1, true)
  end)

  it("sets Accept-Encoding as each request asks when a handle is reused or reset", function()
    local steps = {
      { opts = { url = "/anything/1" }, ae = true },
      { opts = { url = "/anything/2", decompress = false }, ae = false },
      { opts = { url = "/anything/3" }, ae = true },
      { opts = { method = "POST", url = "/anything/4", body = "x" }, ae = true },
      { opts = { url = "/anything/5", decompress = false }, ae = false },
      { opts = { method = "PUT", url = "/anything/6", body = "x", decompress = false }, ae = false },
      { opts = { url = "/anything/7" }, ae = true },
      { opts = { url = "/gzip" }, ae = true },
    }
    for i, step in ipairs(steps) do
      local got = assert(acct:request(step.opts)):json()
      assert.equal(step.ae, got.headers["Accept-Encoding"] ~= nil, "step " .. i)
    end
    -- and across the handles of a batch
    local reqs = {}
    for i = 1, 8 do reqs[i] = acct:prepare { url = "/gzip", decompress = i % 2 == 1 } end
    for i, r in ipairs(connkit.all(reqs, { concurrency = 3 })) do
      local res = assert(r.res, tostring(r.err))
      if i % 2 == 0 then
        assert.equal("\31\139", res.body:sub(1, 2), "item " .. i)
      else
        assert.truthy(res:json().headers["Accept-Encoding"], "item " .. i)
      end
    end
  end)

  it("never keeps a timeout from an earlier request", function()
    assert(acct:request { url = "/delay/0", timeout = 0.5 })
    local res, err = acct:request { url = "/delay/1", timeout = 5 }
    assert.is_nil(err)
    assert.equal(200, res.status)
    local _, err2 = acct:request { url = "/delay/2", timeout = 0.5 }
    assert.equal("timeout", err2 and err2.code)
  end)

  it("runs more transfers at once than it recycles download buffers for", function()
    local echo = connkit.integration {
      name = "Echo2", key = "echo2", auth = "api_token", base_url = "{base}",
      parameters = { base = { required = true } },
    }:account { parameters = { base = ng.url }, credentials = { token = "t-2" } }
    local reqs = {}
    for i = 1, 200 do reqs[i] = echo:prepare { url = "/echo/n" .. i } end
    local results = connkit.all(reqs, { concurrency = 80 })
    assert.equal(200, #results)
    for i = 1, 200 do
      local res = assert(results[i].res, tostring(results[i].err))
      assert.equal(1, res.attempts)
      local line = res.body:match("^[^\n]*")
      assert.equal("GET /echo/n" .. i, line)
      assert.truthy(res.body:find("authorization=Bearer t-2", 1, true))
      assert.equal("text/plain", res.headers["content-type"])
    end
  end)

  it("keeps only the final reply's header lines", function()
    local res = assert(acct:get("/response-headers?X-Test=1"))
    local raw = rawget(res, "_raw_headers")
    assert.falsy(raw:find("HTTP/1", 1, true)) -- no status line
    for line in raw:gmatch("[^\n]+") do
      assert.truthy(line:find("^[%w%-]+: .*\r$"), line) -- no blank line either
    end
    assert.equal("1", res.headers["x-test"])
  end)

  it("refuses a header line with CR, LF or NUL when the request is read into C", function()
    local core = require "connkit.core"
    for _, bad in ipairs { "X-A: 1\r\nX-B: 2", "X-A: 1\n", "X-A: \0" } do
      local w, code = core.wire { url = hb.url .. "/get", header_lines = { "X-Ok: 1", bad } }
      assert.is_nil(w)
      assert.equal("header", code)
    end
    assert.truthy(core.wire { url = hb.url .. "/get", header_lines = { "X-Ok: 1" } })
  end)

  it("honours libcurl's proxy variables, read when the engine starts", function()
    -- a child process, so the variable is there before its engine is made;
    -- the proxy is the nginx peer: a .invalid host is never resolved, so
    -- only through the proxy does the request reach nginx and get echoed
    local path = helpers.tmpdir("proxy") .. "/child.lua"
    helpers.write_file(path, [[
      local connkit = require "connkit"
      local acct = connkit.integration { name = "Via", key = "via", auth = "none" }:account {}
      local res, err = acct:get("http://proxied.invalid/echo/via-proxy")
      io.write(res and res.body:match("^[^\n]*") or ("error " .. tostring(err and err.code)))
    ]])
    local env = { "env" }
    for k, v in pairs(helpers.child_env { http_proxy = ng.url } ) do
      env[#env + 1] = k .. "=" .. helpers.shell_quote(v)
    end
    local ok, out = helpers.run(table.concat(env, " ") .. " " .. helpers.lua .. " " .. helpers.shell_quote(path))
    assert.is_true(ok, out)
    assert.equal("GET /echo/via-proxy", out)
  end)

  it("sends a URL parsed once exactly as libcurl sends the string", function()
    local plain = connkit.integration { name = "Plain", key = "plain", auth = "none" }:account {}
    -- dot segments are resolved, the query is kept as given
    local res = assert(plain:get(ng.url .. "/echo/a/../b?x=%41&y"))
    assert.equal("GET /echo/b?x=%41&y", res.body:match("^[^\n]*"))
    -- the same URL again reuses the parsed one: same request target
    assert.equal("GET /echo/b?x=%41&y", assert(plain:get(ng.url .. "/echo/a/../b?x=%41&y")).body:match("^[^\n]*"))
    -- what libcurl's parser refuses fails in the transfer, as a string would
    local _, err = plain:get(ng.url .. "/echo/a b")
    assert.equal("url", err and err.code)
    local _, err2 = plain:get((ng.url:gsub("^http:", "ftp:")) .. "/echo/x")
    assert.equal("url", err2 and err2.code)
  end)
end)
