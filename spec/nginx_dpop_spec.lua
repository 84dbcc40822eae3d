-- DPoP (RFC 9449) inside nginx: a client-credentials account with
-- oauth2.dpop in a worker of Debian's nginx with its Lua module
-- (spec/peers/openresty.lua), over the ngx transport, against oidc-provider
-- with nonces demanded by its token endpoint and by the resource (both
-- challenges answered with one retry). Scenario: spec/nginx/e2e_dpop.lua.
local helpers = require "helpers"
local openresty = require "peers.openresty"
local cjson = require "cjson"

describe("DPoP inside nginx", function()
  local p, op

  lazy_setup(function()
    op = helpers.peer("oidc")
    p = openresty.start(helpers, { workers = 1 })
  end)
  lazy_teardown(function()
    if p then p.stop() end
  end)

  it("proofs and nonce challenges over the ngx transport; the peer verified every proof", function()
    op.reset()
    assert(op.post("/dpop-test/reset"))
    local nonce = assert(op.post("/dpop-test/config", { token_nonce = "true", api_nonce = "true" })).api_nonce
    local r = p:run("e2e_dpop", { issuer = op.issuer, client_id = op.clients.cc.id,
      client_secret = op.clients.cc.secret, mark = tostring(math.random(1e6)), calls = 2 })
    assert.are.equal("ngx", r.transport)
    for i = 1, 2 do assert.are.equal(200, r.calls[i].status, cjson.encode(r)) end
    local l = assert(op.get("/dpop-test/log"))
    -- the token endpoint: challenged once, then the proof with its nonce
    assert.are.equal(2, #l.token)
    assert.are.equal("use_dpop_nonce", l.token[1].error)
    assert.are.equal(l.token[1].dpop_nonce_sent, l.token[2].proof.nonce)
    assert.are.equal("DPoP", l.token[2].token_type)
    assert.are.equal(r.jkt, l.token[2].proof_jkt)
    -- the resource: challenged once, then every proof verified with its nonce
    assert.are.equal(3, #l.api)
    assert.are.equal("use_dpop_nonce", l.api[1].error)
    for i = 2, 3 do
      assert.are.equal(200, l.api[i].status, l.api[i].error_description)
      assert.are.equal(nonce, l.api[i].proof.nonce)
      for k, ok in pairs(l.api[i].checks) do assert.is_true(ok, k) end
      assert.are.equal(r.jkt, l.api[i].token_jkt)
    end
  end)
end)
