-- connkit.core crypto: known answers, encodings, PKCE, AES-256-GCM seal/open,
-- and the cross-process lock and durable file helpers of lock.c.
local core = require "connkit.core"
local helpers = require "helpers"

local function unhex(h)
  return (h:gsub("%x%x", function(b) return string.char(tonumber(b, 16)) end))
end

describe("crypto known answers", function()
  it("sha256 matches FIPS 180-2 vectors", function()
    assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      core.hex(core.sha256("")))
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
      core.hex(core.sha256("abc")))
    assert.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      core.hex(core.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
    assert.equal(32, #core.sha256("x"))
  end)

  it("hmac_sha256 matches RFC 4231 test cases 1, 2 and 6", function()
    assert.equal("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
      core.hex(core.hmac_sha256(("\11"):rep(20), "Hi There")))
    assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      core.hex(core.hmac_sha256("Jefe", "what do ya want for nothing?")))
    -- key longer than the block size is hashed first
    assert.equal("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
      core.hex(core.hmac_sha256(("\170"):rep(131),
        "Test Using Larger Than Block-Size Key - Hash Key First")))
    assert.equal(32, #core.hmac_sha256("", ""))
  end)

  it("hex encodes every byte value in lower case", function()
    assert.equal("", core.hex(""))
    assert.equal("00ff10ab", core.hex("\0\255\16\171"))
  end)
end)

describe("base64", function()
  local vectors = { -- RFC 4648 section 10
    { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
    { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
  }

  it("encodes and decodes the RFC 4648 vectors", function()
    for _, v in ipairs(vectors) do
      assert.equal(v[2], core.b64encode(v[1]))
      assert.equal(v[1], core.b64decode(v[2]))
      local url = v[2]:gsub("=", "")
      assert.equal(url, core.b64url_encode(v[1]))
      assert.equal(v[1], core.b64url_decode(url))
    end
  end)

  it("accepts missing padding and padded base64url", function()
    assert.equal("f", core.b64decode("Zg"))
    assert.equal("fo", core.b64decode("Zm8"))
    assert.equal("f", core.b64url_decode("Zg=="))
  end)

  it("uses - and _ in base64url and + and / in base64", function()
    local s = "\251\255\191"
    assert.equal("+/+/", core.b64encode(s))
    assert.equal("-_-_", core.b64url_encode(s))
    assert.equal(s, core.b64decode("+/+/"))
    assert.equal(s, core.b64url_decode("-_-_"))
  end)

  it("round-trips every byte value and every length up to 70", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    for n = 0, 70 do
      local s = all:sub(256 - n, 255)
      assert.equal(s, core.b64decode(core.b64encode(s)))
      assert.equal(s, core.b64url_decode(core.b64url_encode(s)))
    end
    assert.equal(all, core.b64decode(core.b64encode(all)))
  end)

  it("refuses malformed input with nil, bad_base64, message", function()
    local bad = {
      "Z",          -- one symbol cannot hold a byte
      "Zg=",        -- padding that does not complete the quantum
      "Zg===",      -- too much padding
      "Zm9v!",      -- invalid character
      " Zg==",      -- whitespace
      "Zh==",       -- non-zero trailing bits (not canonical)
      "Zm=9",       -- padding in the middle
      "=",
    }
    for _, s in ipairs(bad) do
      local r, code, msg = core.b64decode(s)
      assert.is_nil(r, s)
      assert.equal("bad_base64", code)
      assert.is_string(msg)
    end
    assert.is_nil(core.b64decode("-_8"))          -- url alphabet in std decoder
    assert.is_nil(core.b64url_decode("+/8"))      -- std alphabet in url decoder
  end)

  it("raises on a non-string argument", function()
    assert.has_error(function() core.b64encode({}) end)
    assert.has_error(function() core.b64decode(nil) end)
  end)
end)

describe("random and ct_equal", function()
  it("returns n fresh random bytes", function()
    assert.equal(0, #core.random(0))
    local a, b = core.random(32), core.random(32)
    assert.equal(32, #a)
    assert.are_not.equal(a, b)
    assert.equal(100000, #core.random(100000))
  end)

  it("raises on a bad count", function()
    assert.has_error(function() core.random(-1) end)
    assert.has_error(function() core.random("x") end)
  end)

  it("compares in constant time, lengths first", function()
    assert.is_true(core.ct_equal("", ""))
    assert.is_true(core.ct_equal("secret", "secret"))
    assert.is_false(core.ct_equal("secret", "secreT"))
    assert.is_false(core.ct_equal("secret", "secret2"))
    assert.is_false(core.ct_equal("a\0b", "a\0c"))
    assert.has_error(function() core.ct_equal("a") end)
  end)
end)

describe("PKCE", function()
  it("computes the RFC 7636 appendix B challenge", function()
    local verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    -- the appendix's verifier is the base64url of these 32 octets
    local octets = { 116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173,
      187, 186, 22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121 }
    local raw = {}
    for i, o in ipairs(octets) do raw[i] = string.char(o) end
    assert.equal(verifier, core.b64url_encode(table.concat(raw)))
    assert.equal("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", core.pkce_challenge(verifier))
  end)

  it("makes a fresh 43-char verifier and its S256 challenge", function()
    local v1, c1 = core.pkce()
    local v2 = core.pkce()
    assert.equal(43, #v1)
    assert.matches("^[%w%-%._~]+$", v1)
    assert.are_not.equal(v1, v2)
    assert.equal(c1, core.pkce_challenge(v1))
    assert.equal(core.b64url_encode(core.sha256(v1)), c1)
    assert.equal(43, #c1)
  end)

  it("makes verifiers up to 128 chars", function()
    assert.equal(128, #core.pkce(96))
    assert.has_error(function() core.pkce(31) end)
    assert.has_error(function() core.pkce(97) end)
  end)

  it("refuses verifiers outside RFC 7636 section 4.1", function()
    assert.has_error(function() core.pkce_challenge(("a"):rep(42)) end)
    assert.has_error(function() core.pkce_challenge(("a"):rep(129)) end)
    assert.has_error(function() core.pkce_challenge(("a"):rep(42) .. "+") end)
    assert.equal(43, #core.pkce_challenge(("a"):rep(42) .. "~"))
  end)
end)

describe("AES-256-GCM seal/open", function()
  local key = core.random(32)

  it("round-trips with nonce || ciphertext || tag and a fresh nonce per call", function()
    local s1 = core.seal(key, "the plaintext", "aad")
    local s2 = core.seal(key, "the plaintext", "aad")
    assert.equal(12 + #"the plaintext" + 16, #s1)
    assert.are_not.equal(s1:sub(1, 12), s2:sub(1, 12))
    assert.are_not.equal(s1, s2)
    assert.equal("the plaintext", core.open(key, s1, "aad"))
    assert.equal("the plaintext", core.open(key, s2, "aad"))
    assert.is_nil(s1:find("plaintext", 1, true))
  end)

  it("handles empty and large plaintexts and binary data", function()
    assert.equal("", core.open(key, core.seal(key, ""), nil))
    local big = core.random(1024 * 1024)
    assert.equal(big, core.open(key, core.seal(key, big, "x"), "x"))
    assert.equal("\0\1\2", core.open(key, core.seal(key, "\0\1\2")))
  end)

  it("treats a missing aad as empty", function()
    assert.equal("p", core.open(key, core.seal(key, "p"), ""))
    assert.equal("p", core.open(key, core.seal(key, "p", ""), nil))
  end)

  it("matches the GCM spec known answer (test case 15)", function()
    -- McGrew & Viega GCM spec, test case 15: 256-bit key, 96-bit IV, no AAD
    local k = unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
    local iv = unhex("cafebabefacedbaddecaf888")
    local pt = unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
      .. "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255")
    local ct = unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
      .. "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad")
    local tag = unhex("b094dac5d93471bdec1a502270e3cc6c")
    assert.equal(pt, core.open(k, iv .. ct .. tag))
  end)

  it("refuses a wrong key with store_auth", function()
    local s = core.seal(key, "secret record", "id")
    local r, code, msg = core.open(core.random(32), s, "id")
    assert.is_nil(r)
    assert.equal("store_auth", code)
    assert.is_nil(msg:find("secret record", 1, true))
  end)

  it("refuses a changed byte anywhere (nonce, ciphertext, tag)", function()
    local s = core.seal(key, "0123456789abcdef", "id")
    for i = 1, #s do
      local b = s:byte(i)
      local t = s:sub(1, i - 1) .. string.char((b + 1) % 256) .. s:sub(i + 1)
      local r, code = core.open(key, t, "id")
      assert.is_nil(r, "byte " .. i)
      assert.equal("store_auth", code)
    end
  end)

  it("refuses truncated and extended data", function()
    local s = core.seal(key, "payload", "id")
    for _, t in ipairs({ "", s:sub(1, 27), s:sub(1, 12), s:sub(1, #s - 1), s:sub(2), s .. "x" }) do
      local r, code = core.open(key, t, "id")
      assert.is_nil(r)
      assert.equal("store_auth", code)
    end
  end)

  it("refuses a wrong associated data", function()
    local s = core.seal(key, "payload", "account-a")
    local r, code = core.open(key, s, "account-b")
    assert.is_nil(r)
    assert.equal("store_auth", code)
    assert.is_nil(core.open(key, s, nil))
  end)

  it("raises on misuse: key length and argument types", function()
    assert.has_error(function() core.seal(("k"):rep(31), "p") end, nil)
    assert.has_error(function() core.seal(("k"):rep(33), "p") end)
    assert.has_error(function() core.open(("k"):rep(16), ("x"):rep(40)) end)
    assert.has_error(function() core.seal(nil, "p") end)
    assert.has_error(function() core.seal(key, nil) end)
    assert.has_error(function() core.seal(key, "p", {}) end)
    local ok, err = pcall(core.seal, ("k"):rep(31), "p")
    assert.is_false(ok)
    assert.matches("32 bytes", err)
  end)
end)

describe("lock_file and durable file helpers", function()
  local dir
  before_each(function() dir = helpers.tmpdir("lock") end)
  after_each(function() helpers.execute("rm -rf " .. helpers.shell_quote(dir)) end)

  it("locks, refuses a second holder until unlocked, and unlocks idempotently", function()
    local path = dir .. "/a.lock"
    local lk = assert(core.lock_file(path))
    assert.is_true(lk:held())
    assert.matches("held", tostring(lk))
    local lk2, code = core.lock_file(path, 0)
    assert.is_nil(lk2)
    assert.equal("lock_timeout", code)
    assert.is_true(lk:unlock())
    assert.is_true(lk:unlock())
    assert.is_false(lk:held())
    lk2 = assert(core.lock_file(path, 0))
    lk2:unlock()
  end)

  it("waits for the timeout before giving up", function()
    local socket = require "socket"
    local path = dir .. "/b.lock"
    local lk = assert(core.lock_file(path))
    local t0 = socket.gettime()
    local r, code, msg = core.lock_file(path, 0.3)
    local dt = socket.gettime() - t0
    assert.is_nil(r)
    assert.equal("lock_timeout", code)
    assert.matches("b%.lock", msg)
    assert.is_true(dt >= 0.28 and dt < 2, "waited " .. dt)
    lk:unlock()
  end)

  it("releases the lock when the object is collected", function()
    local path = dir .. "/c.lock"
    do local lk = assert(core.lock_file(path)) assert.truthy(lk) end
    collectgarbage()
    collectgarbage()
    local lk = assert(core.lock_file(path, 0))
    lk:unlock()
  end)

  it("releases the lock on __close (Lua 5.4 to-be-closed variables)", function()
    if _VERSION ~= "Lua 5.4" then return end
    local path = dir .. "/g.lock"
    local chunk = assert((loadstring or load)([[
      local core, path = ...
      do local lk <close> = assert(core.lock_file(path)) end
    ]]))
    chunk(core, path)
    local lk = assert(core.lock_file(path, 0))
    lk:unlock()
  end)

  it("creates the lock file 0600 and refuses a symlink", function()
    local lfs = require "lfs"
    local path = dir .. "/d.lock"
    local lk = assert(core.lock_file(path))
    lk:unlock()
    assert.equal("rw-------", lfs.attributes(path, "permissions"))
    helpers.execute("ln -s " .. helpers.shell_quote(dir .. "/target") .. " " .. helpers.shell_quote(dir .. "/e.lock"))
    local r, code = core.lock_file(dir .. "/e.lock", 0)
    assert.is_nil(r)
    assert.equal("io", code)
  end)

  it("raises on a bad timeout", function()
    assert.has_error(function() core.lock_file(dir .. "/f.lock", -1) end)
    assert.has_error(function() core.lock_file(dir .. "/f.lock", "soon") end)
  end)

  it("mkdir creates missing parents with the mode and accepts an existing dir", function()
    local lfs = require "lfs"
    local p = dir .. "/x/y/z"
    assert.is_true(core.mkdir(p, 448))
    assert.equal("rwx------", lfs.attributes(p, "permissions"))
    assert.is_true(core.mkdir(p .. "/", 448))
    helpers.write_file(dir .. "/file", "x")
    local ok, code = core.mkdir(dir .. "/file/sub")
    assert.is_nil(ok)
    assert.equal("io", code)
  end)

  it("write_file_atomic replaces the file with the given mode and leaves no temp file", function()
    local lfs = require "lfs"
    local p = dir .. "/rec"
    assert.is_true(core.write_file_atomic(p, "one", 384))
    assert.is_true(core.write_file_atomic(p, "two\0bytes", 384))
    assert.equal("two\0bytes", helpers.read_file(p))
    assert.equal("rw-------", lfs.attributes(p, "permissions"))
    local names = {}
    for name in lfs.dir(dir) do if name ~= "." and name ~= ".." then names[#names + 1] = name end end
    assert.same({ "rec" }, names)
    local ok, code = core.write_file_atomic(dir .. "/missing/rec", "x")
    assert.is_nil(ok)
    assert.equal("io", code)
  end)

  it("read_file reports not_found and refuses a private file others can read", function()
    local r, code = core.read_file(dir .. "/nope")
    assert.is_nil(r)
    assert.equal("not_found", code)
    helpers.write_file(dir .. "/k", "key", "644")
    assert.equal("key", core.read_file(dir .. "/k"))
    local r2, code2, msg2 = core.read_file(dir .. "/k", true)
    assert.is_nil(r2)
    assert.equal("insecure_permissions", code2)
    assert.matches("644", msg2)
    helpers.execute("chmod 600 " .. helpers.shell_quote(dir .. "/k"))
    assert.equal("key", core.read_file(dir .. "/k", true))
  end)
end)
