describe("helpers", function()
  local helpers = require "helpers"
  it("starts httpbin", function()
    local hb = helpers.peer("httpbin")
    local ok, out = helpers.run("curl -s " .. hb.url .. "/get")
    assert.truthy(ok)
    assert.matches('"url"', out)
  end)
end)
