-- The status code and HTTP version of a reply are read from its status line
-- as curl hands it over (csrc/http.c read_status_line), not asked of curl
-- afterwards: an HTTP/1.0 reply, an interim 103 before the final reply, a
-- status line without a reason phrase, bare LF line ends; each must give
-- what curl itself reports. Against the scripted peer's raw routes.
local helpers = require "helpers"
local connkit = require "connkit"

local sp, acct

setup(function()
  sp = helpers.peer("scripted")
  acct = connkit.integration { name = "Status lines", key = "statuslines", auth = "none", base_url = "{base}",
    parameters = { base = { required = true } } }:account { parameters = { base = sp.url } }
end)

before_each(function() sp.reset() end)

-- Each case: the route, then the status, version and a header the reply must show.
local CASES = {
  { "/raw/http10", 203, "1.0", "content-length", "2" },
  { "/raw/early-hints", 201, "1.1", "x-final", "yes" },
  { "/raw/no-reason", 299, "1.1", "content-length", "2" },
  { "/raw/lf-only", 202, "1.1", "x-lf", "1" },
}

describe("a reply's status line", function()
  for _, c in ipairs(CASES) do
    local path, status, version, header, value = c[1], c[2], c[3], c[4], c[5]
    it(("gives status %d and HTTP/%s (%s), one request or many at once"):format(status, version, path), function()
      local res = assert(acct:get(path))
      assert.equal(status, res.status)
      assert.equal(version, res.http_version)
      assert.equal(value, res.headers[header])
      assert.equal("ok", res.body)
      assert.equal("GET", sp.last(path).method)
      -- connkit.all reads them the same way
      local reqs = {}
      for i = 1, 3 do reqs[i] = assert(acct:prepare { url = path }) end
      for _, r in ipairs(connkit.all(reqs)) do
        assert.is_nil(r.err)
        assert.equal(status, r.res.status)
        assert.equal(version, r.res.http_version)
      end
      assert.equal(4, #sp.requests(path))
    end)
  end

  it("of an interim reply does not leak into the final one's headers", function()
    local res = assert(acct:get("/raw/early-hints"))
    assert.is_nil(res.headers.link)
  end)
end)
