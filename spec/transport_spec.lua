-- The transport seam outside OpenResty: every request goes over the curl
-- transport, connkit.transport() says so, and use_transport() refuses what
-- cannot work here with a message naming it. (Inside nginx:
-- spec/nginx_transport_spec.lua.)
local connkit = require "connkit"
local helpers = require "helpers"

describe("transports outside OpenResty", function()
  after_each(function() connkit.use_transport("auto") end)

  it("a request made here uses the curl transport", function()
    assert.equal("curl", connkit.transport())
    local hb = helpers.peer("httpbin")
    local acct = connkit.integration {
      name = "Transport", key = "transport", auth = "api_token", base_url = hb.url,
      auth_token = { type = "header", name = "X-Api-Key", value = "{token}" },
    }:account { id = "t", credentials = { token = "tok-transport" } }
    local res = assert(acct:get("/headers"))
    -- what the peer received
    assert.equal("tok-transport", assert(res:json()).headers["X-Api-Key"])
  end)

  it("use_transport('ngx') is refused outside nginx, naming OpenResty", function()
    local ok, err = pcall(connkit.use_transport, "ngx")
    assert.is_false(ok)
    assert.matches("only inside OpenResty", err, 1, true)
    assert.equal("curl", connkit.transport())
  end)

  it("use_transport refuses a name it does not know, naming the choices", function()
    local ok, err = pcall(connkit.use_transport, "http2")
    assert.is_false(ok)
    assert.matches("'curl', 'ngx' or 'auto', not 'http2'", err, 1, true)
    ok, err = pcall(connkit.use_transport, nil)
    assert.is_false(ok)
    assert.matches("not a nil", err, 1, true)
  end)

  it("use_transport('curl') and 'auto' are accepted", function()
    connkit.use_transport("curl")
    assert.equal("curl", connkit.transport())
    connkit.use_transport("auto")
    assert.equal("curl", connkit.transport())
  end)
end)
