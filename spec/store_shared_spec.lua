-- connkit.store.shared outside OpenResty (its behaviour inside nginx is in
-- nginx_store_spec.lua), and the sealing envelope it shares with the file
-- store (connkit.store.envelope).
local connkit = require "connkit"
local core = require "connkit.core"
local envelope = require "connkit.store.envelope"

local function new_key() return core.b64encode(core.random(32)) end

describe("connkit.store.shared outside OpenResty", function()
  it("raises an error saying it needs OpenResty, at the caller's line", function()
    assert.is_nil(rawget(_G, "ngx"))
    for _, f in ipairs({ connkit.store.shared, require("connkit.store").shared }) do
      local ok, err = pcall(f, "tokens", { key = new_key() })
      assert.is_false(ok)
      assert.matches("connkit.store.shared needs OpenResty", err, 1, true)
      assert.matches("connkit.store.file", err, 1, true) -- what to use instead
      assert.matches("store_shared_spec.lua:%d+:", err)
    end
  end)
end)

describe("connkit.store.envelope", function()
  local key = core.b64decode(new_key())

  it("opens what it sealed, for the same tag and id only", function()
    local sealed = envelope.seal(key, "TAG1", "acct", '{"a":1}')
    assert.are.equal("TAG1", sealed:sub(1, 4))
    assert.is_nil(sealed:find('{"a":1}', 1, true))
    assert.are.equal('{"a":1}', envelope.open(key, "TAG1", "acct", sealed))
    assert.are.same({ nil, "auth" }, { envelope.open(key, "TAG1", "other", sealed) })
    assert.are.same({ nil, "tag" }, { envelope.open(key, "TAG2", "acct", sealed) })
    -- the tag is bound too: the same bytes behind another tag do not open
    assert.are.same({ nil, "auth" }, { envelope.open(key, "TAG2", "acct", "TAG2" .. sealed:sub(5)) })
    local other = core.b64decode(new_key())
    assert.are.same({ nil, "auth" }, { envelope.open(other, "TAG1", "acct", sealed) })
    local flipped = sealed:sub(1, -2) .. string.char((sealed:byte(-1) + 1) % 256)
    assert.are.same({ nil, "auth" }, { envelope.open(key, "TAG1", "acct", flipped) })
  end)

  it("loads the key from the options, naming the store; optional unless required", function()
    assert.are.equal(32, #envelope.load_key("who", { key = new_key() }, true))
    assert.is_nil(envelope.load_key("who", {}, false))
    local ok, err = pcall(envelope.load_key, "some.store", {}, true)
    assert.is_false(ok)
    assert.matches("some.store: option 'key' (base64 of 32 bytes) or 'key_file' is required", err, 1, true)
    ok, err = pcall(envelope.load_key, "some.store", { key = "secret-ish text!" }, false)
    assert.is_false(ok)
    assert.matches("some.store: option 'key' is not valid base64", err, 1, true)
    assert.is_nil(err:find("secret-ish", 1, true))
  end)
end)
