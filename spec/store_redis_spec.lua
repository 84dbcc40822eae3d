-- connkit.store.redis against a real redis-server on loopback (spec/peers/
-- redis.lua): options, round trips, encryption at rest (read back with
-- redis-cli), versions, the owned lock, the fenced commit, Redis paused or
-- gone, and one lock attempt per account per process.
local helpers = require "helpers"
local connkit = require "connkit"
local core = require "connkit.core"
local socket = require "socket"

local KEY = core.b64encode(core.random(32))

local function fresh_id(tag) return (tag or "acct") .. "-" .. core.hex(core.random(4)) end

-- The error a call raises (its message), or fails the test.
local function raised(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

describe("connkit.store.redis options", function()
  local r
  setup(function() r = helpers.peer("redis") end)

  local function refuses(opts, pattern)
    local msg = raised(connkit.store.redis, opts)
    assert.matches(pattern, msg, 1, true)
    assert.is_nil(msg:find(r.password, 1, true), "the password shows in: " .. msg)
    assert.is_nil(msg:find(KEY, 1, true), "the key shows in: " .. msg)
    return msg
  end

  it("parses the url and refuses a bad one by name, never showing it", function()
    refuses({ url = "http://:" .. r.password .. "@127.0.0.1:1/0", key = KEY }, "option 'url' must look like redis://")
    refuses({ url = "redis://:" .. r.password .. "@:6379/0", key = KEY }, "option 'url'")
    refuses({ url = "redis://:" .. r.password .. "@127.0.0.1:99999/0", key = KEY }, "option 'url' has a port outside")
    refuses({ url = "redis://:" .. r.password .. "@127.0.0.1:6379/x", key = KEY }, "database in option 'url'")
    refuses({ url = "redis://127.0.0.1:6379x", key = KEY }, "option 'url'")
    refuses({ url = r.url, host = "127.0.0.1", key = KEY }, "give option 'url' or option 'host'")
    refuses({ socket = "/tmp/x.sock", host = "127.0.0.1", key = KEY }, "option 'socket'")
    refuses({ url = 42, key = KEY }, "option 'url'")
  end)

  it("needs a key, a key_file, or plaintext = true on purpose", function()
    refuses({ url = r.url }, "option 'key' (base64 of 32 bytes) or 'key_file' is required")
    refuses({ url = r.url, key = "short" }, "option 'key'")
    refuses({ url = r.url, key = KEY, key_file = "/x" }, "not both")
    refuses({ url = r.url, key = KEY, plaintext = true }, "option 'plaintext'")
    refuses({ url = r.url, plaintext = "yes" }, "option 'plaintext'")
    refuses({ url = r.url, key_file = "/nonexistent/key" }, "option 'key_file'")
    assert.is_table(connkit.store.redis { url = r.url, plaintext = true })
  end)

  it("checks timeouts, prefix and unknown options", function()
    refuses({ url = r.url, key = KEY, timeout = 0 }, "option 'timeout'")
    refuses({ url = r.url, key = KEY, timeout = -1 }, "option 'timeout'")
    refuses({ url = r.url, key = KEY, lock_ttl = 0 }, "option 'lock_ttl'")
    refuses({ url = r.url, key = KEY, lock_timeout = -1 }, "option 'lock_timeout'")
    refuses({ url = r.url, key = KEY, prefix = "a{b" }, "option 'prefix'")
    refuses({ url = r.url, key = KEY, lock_tll = 3 }, "unknown option 'lock_tll' (did you mean 'lock_ttl'?)")
  end)

  it("a wrong password: code store naming the address, the password nowhere", function()
    local wrong = "wrong-" .. core.hex(core.random(8))
    local s = connkit.store.redis { host = "127.0.0.1", port = r.port, password = wrong, key = KEY }
    for _, call in ipairs({ s.get, s.lock }) do
      local res, err = call("x")
      assert.is_nil(res)
      assert.equal("store", err.code)
      assert.matches("127.0.0.1:" .. r.port, err.message, 1, true)
      assert.matches("AUTH", err.message, 1, true)
      assert.is_nil(err.message:find(wrong, 1, true))
    end
  end)

  it("names the address, not the password, in tostring", function()
    local s = connkit.store.redis { url = r.url, key = KEY }
    assert.equal("connkit.store.redis(127.0.0.1:" .. r.port .. ")", tostring(s))
  end)
end)

describe("connkit.store.redis records", function()
  local r, s
  setup(function()
    r = helpers.peer("redis")
    s = connkit.store.redis { url = r.url, key = KEY }
  end)

  it("round-trips records, removes them, and shares them between store objects", function()
    local id = fresh_id()
    assert.is_nil(s.get(id))
    local rec = { access_token = "at-1", refresh_token = "rt-1", expires_at = 1700000000, scope = "a b",
      nested = { x = 1, y = { "p", "q" } }, flag = true }
    assert.is_true(s.put(id, rec))
    assert.same(rec, s.get(id))
    assert.same(rec, s:get(id))
    local other = connkit.store.redis { host = "127.0.0.1", port = r.port, password = r.password, key = KEY }
    assert.same(rec, other.get(id))
    assert.is_true(s.put(id, nil))
    assert.is_nil(s.get(id))
    assert.is_nil(other.get(id))
  end)

  it("keeps ids with braces, slashes and non-ASCII apart, each in one hash slot", function()
    local ids = { "a{b}c", "a/b", "ü ñ", "{x}", "x" }
    for i, id in ipairs(ids) do assert.is_true(s.put(id, { access_token = "t" .. i })) end
    for i, id in ipairs(ids) do assert.equal("t" .. i, s.get(id).access_token) end
    -- the record and lock keys of an id share their hash tag
    local keys = r.cli("--scan", "--pattern", "connkit:*")
    for k in keys:gmatch("[^\n]+") do assert.matches("^connkit:{[^{}]+}:record$", k) end
    for _, id in ipairs(ids) do s.put(id, nil) end
  end)

  it("seals records: redis-cli sees no token, a wrong key or a moved record does not open", function()
    local id = fresh_id()
    local secret = "tok-" .. core.hex(core.random(8))
    assert.is_true(s.put(id, { access_token = secret, refresh_token = secret .. "-rt" }))
    local raw = r.cli("HGET", "connkit:{" .. id .. "}:record", "data")
    assert.is_true(#raw > 40)
    assert.is_nil(raw:find(secret, 1, true))
    assert.is_nil(raw:find("access_token", 1, true))
    local wrong = connkit.store.redis { url = r.url, key = core.b64encode(core.random(32)) }
    local rec, err = wrong.get(id)
    assert.is_nil(rec)
    assert.equal("store_auth", err.code)
    -- the sealed record copied onto another account's key does not open
    local id2 = fresh_id()
    r.cli("COPY", "connkit:{" .. id .. "}:record", "connkit:{" .. id2 .. "}:record")
    rec, err = s.get(id2)
    assert.is_nil(rec)
    assert.equal("store_auth", err.code)
    -- a plaintext store refuses a sealed record, a keyed one a plain record
    local plain = connkit.store.redis { url = r.url, plaintext = true, prefix = "plain:" }
    assert.is_true(plain.put(id, { access_token = secret }))
    assert.matches(secret, r.cli("HGET", "plain:{" .. id .. "}:record", "data"), 1, true)
    assert.equal(secret, plain.get(id).access_token)
    local keyed = connkit.store.redis { url = r.url, key = KEY, prefix = "plain:" }
    assert.equal("store_auth", select(2, keyed.get(id)).code)
  end)

  it("grows the version on every write and refuses an older version put back", function()
    local id = fresh_id()
    local rkey = "connkit:{" .. id .. "}:record"
    local versions = {}
    for i = 1, 3 do
      assert.is_true(s.put(id, { access_token = "v" .. i }))
      versions[i] = tonumber(r.cli("HGET", rkey, "v"))
    end
    assert.same({ 1, 2, 3 }, versions)
    local old = r.cli("--no-raw", "HGET", rkey, "data")
    assert.is_true(s.put(id, nil))
    assert.equal(4, tonumber(r.cli("HGET", rkey, "v")))
    assert.is_true(s.put(id, { access_token = "v5" }))
    assert.equal(5, tonumber(r.cli("HGET", rkey, "v")))
    -- an older sealed record written back under the current version: refused
    local unquoted = assert((loadstring or load)("return " .. old:gsub("%s+$", "")))()
    local w = io.popen(helpers.clean_env .. "REDISCLI_AUTH=" .. helpers.shell_quote(r.password)
      .. " redis-cli -x -p " .. r.port .. " HSET " .. rkey .. " data >/dev/null", "w")
    w:write(unquoted)
    w:close()
    local rec, err = s.get(id)
    assert.is_nil(rec)
    assert.equal("store_auth", err.code)
  end)
end)

describe("connkit.store.redis after fork", function()
  it("a child does not use the parent's connection: it opens its own (LuaJIT ffi fork)", function()
    if not jit then
      pending("needs LuaJIT's ffi to fork")
      return
    end
    local ffi = require "ffi"
    pcall(ffi.cdef, "int fork(void); void _exit(int); int waitpid(int pid, int *status, int options);")
    local r = helpers.peer("redis")
    local s = connkit.store.redis { url = r.url, key = KEY }
    local id = fresh_id()
    assert(s.put(id, { access_token = "parent" }))
    local function connections()
      return tonumber(r.cli("INFO", "stats"):match("total_connections_received:(%d+)"))
    end
    local before = connections()
    local pid = ffi.C.fork()
    if pid == 0 then
      local ok = s.put(id, { access_token = "child" })
      ffi.C._exit(ok and 0 or 1)
    end
    local status = ffi.new("int[1]")
    ffi.C.waitpid(pid, status, 0)
    assert.equal(0, status[0])
    -- one for the redis-cli of connections(), one for the child's own
    assert.equal(before + 2, connections())
    assert.equal("child", s.get(id).access_token)
  end)
end)

describe("connkit.store.redis lock", function()
  local r, s
  setup(function()
    r = helpers.peer("redis")
    s = connkit.store.redis { url = r.url, key = KEY, lock_ttl = 1, lock_timeout = 0.3 }
  end)

  it("is owned (128 random bits) and expires after lock_ttl", function()
    local id = fresh_id()
    local lkey = "connkit:{" .. id .. "}:lock"
    local unlock = assert(s.lock(id))
    local owner = r.cli("GET", lkey):match("%S+")
    assert.matches("^%x+$", owner)
    assert.equal(32, #owner)
    local pttl = tonumber(r.cli("PTTL", lkey))
    assert.is_true(pttl > 500 and pttl <= 1000, "pttl " .. tostring(pttl))
    -- a second holder waits lock_timeout, then gives up
    local t0 = socket.gettime()
    local none, err = s.lock(id)
    assert.is_nil(none)
    assert.equal("lock_timeout", err.code)
    assert.is_true(socket.gettime() - t0 >= 0.25)
    assert.is_true(unlock())
    assert.equal("", r.cli("GET", lkey):match("^%s*(.-)%s*$"))
    -- max_wait shortens the wait
    local u2 = assert(s.lock(id))
    t0 = socket.gettime()
    assert.equal("lock_timeout", select(2, s.lock(id, 0.05)).code)
    assert.is_true(socket.gettime() - t0 < 0.25)
    u2()
  end)

  it("unlocks by compare-and-delete: a holder past its lease leaves the next one's lock alone", function()
    local id = fresh_id()
    local lkey = "connkit:{" .. id .. "}:lock"
    local unlock1 = assert(s.lock(id))
    socket.sleep(1.1) -- the lease runs out
    local unlock2 = assert(s.lock(id))
    local owner2 = r.cli("GET", lkey):match("%S+")
    unlock1()
    assert.equal(owner2, r.cli("GET", lkey):match("%S+"))
    unlock2()
    assert.equal("", r.cli("GET", lkey):match("^%s*(.-)%s*$"))
  end)

  it("refuses a fenced commit from a holder past its lease: lock_lost, the newer record kept", function()
    local id = fresh_id()
    assert.is_true(s.put(id, { access_token = "v1" }))
    local unlock1, held1 = s.lock(id)
    assert.equal("v1", held1.get().access_token)
    assert.is_true(held1.begin())
    socket.sleep(1.1)
    local unlock2, held2 = assert(s.lock(id))
    assert.equal("v1", held2.get().access_token)
    assert.is_true(held2.inflight ~= nil, "the first holder's mark is seen")
    assert.is_true(held2.put({ access_token = "v2-winner" }))
    unlock2()
    local ok, err = held1.put({ access_token = "v2-loser" })
    assert.is_nil(ok)
    assert.equal("lock_lost", err.code)
    assert.equal("v2-winner", s.get(id).access_token)
    unlock1()
    -- begin refused too, and a holder whose record changed (lock kept, version moved)
    local unlock3, held3 = s.lock(id)
    held3.get()
    assert.is_true(s.put(id, { access_token = "v3-outside" }))
    local ok3, err3 = held3.put({ access_token = "v3-holder" })
    assert.is_nil(ok3)
    assert.equal("lock_lost", err3.code)
    assert.equal("lock_lost", select(2, held3.begin()).code)
    assert.equal("v3-outside", s.get(id).access_token)
    unlock3()
  end)

  it("commits for a holder whose lease ran out when nobody took the lock meanwhile", function()
    -- (refusing would throw away a refresh token the server already rotated)
    local id = fresh_id()
    local lkey = "connkit:{" .. id .. "}:lock"
    assert.is_true(s.put(id, { access_token = "v1" }))
    local unlock, held = s.lock(id)
    held.get()
    socket.sleep(1.1)
    assert.is_true(held.begin(), "the lock is taken again")
    assert.is_true(tonumber(r.cli("PTTL", lkey)) > 500)
    socket.sleep(1.1) -- and runs out again before the commit
    assert.is_true(held.put({ access_token = "v2" }))
    assert.equal("v2", s.get(id).access_token)
    unlock()
    assert.equal("", r.cli("GET", lkey):match("^%s*(.-)%s*$"))
  end)
end)

describe("connkit.store.redis when Redis is in trouble", function()
  local r
  setup(function() r = helpers.peer("redis").new { password = "pw-" .. core.hex(core.random(6)) } end)
  teardown(function() r.stop() end)

  local function store_error(err, t0, limit)
    local took = socket.gettime() - t0
    assert.is_table(err)
    assert.equal("store", err.code)
    assert.matches("127.0.0.1:" .. r.port, err.message, 1, true)
    assert.is_nil(err.message:find(r.password, 1, true))
    assert.is_true(took < limit, ("took %.2f s"):format(took))
  end

  it("paused (SIGSTOP): get, put and lock fail with code store within the timeout", function()
    local s = connkit.store.redis { url = r.url, key = KEY, timeout = 0.5 }
    local id = fresh_id()
    assert.is_true(s.put(id, { access_token = "x" }))
    r.pause()
    finally(function() r.resume() end)
    -- (the lock first: its SET goes out on the open connection)
    for _, call in ipairs({
      function() return s.lock(id) end,
      function() return s.get(id) end,
      function() return s.put(id, { access_token = "y" }) end,
    }) do
      local t0 = socket.gettime()
      local res, err = call()
      assert.is_nil(res)
      store_error(err, t0, 1.3)
    end
    r.resume()
    assert.equal("x", s.get(id).access_token)
    -- the lock SET that timed out reached Redis after all once it resumed:
    -- the store releases it (it is its own) instead of waiting out lock_ttl
    local t0 = socket.gettime()
    local unlock = assert(s.lock(id, 1))
    assert.is_true(socket.gettime() - t0 < 0.5)
    unlock()
  end)

  it("gone: code store at once, and back when it is back", function()
    local s = connkit.store.redis { url = r.url, key = KEY, timeout = 0.5 }
    local id = fresh_id()
    assert.is_true(s.put(id, { access_token = "x" }))
    r.kill()
    local t0 = socket.gettime()
    local res, err = s.get(id)
    assert.is_nil(res)
    store_error(err, t0, 0.8)
    r.restart()
    -- no AOF here: the record is gone, the store works again
    assert.is_nil(s.get(id))
    assert.is_true(s.put(id, { access_token = "z" }))
  end)

  it("answering an error: code store naming the address; scripts loaded again after SCRIPT FLUSH", function()
    local s = connkit.store.redis { url = r.url, key = KEY, timeout = 0.5 }
    local id = fresh_id()
    r.cli("SET", "connkit:{" .. id .. "}:record", "not a hash")
    local res, err = s.get(id)
    assert.is_nil(res)
    assert.equal("store", err.code)
    assert.matches("127.0.0.1:" .. r.port .. ": WRONGTYPE", err.message, 1, true)
    r.cli("DEL", "connkit:{" .. id .. "}:record")
    local unlock, held = assert(s.lock(id))
    held.get()
    assert.is_true(held.put({ access_token = "a" }))
    unlock()
    r.cli("SCRIPT", "FLUSH")
    unlock, held = assert(s.lock(id))
    held.get()
    assert.is_true(held.put({ access_token = "b" }))
    assert.is_true(unlock())
    assert.equal("b", s.get(id).access_token)
  end)

  it("a still-valid token keeps serving while Redis is paused; refreshes resume after", function()
    local op = helpers.peer("oidc").new { cc_ttl = 4 }
    finally(function() op.stop() end)
    local s = connkit.store.redis { url = r.url, key = KEY, timeout = 0.5 }
    local acct = connkit.integration {
      name = "CC", key = "cc", auth = "oauth2", base_url = "{issuer}",
      parameters = { issuer = { required = true } },
      oauth2 = { grant_type = "client_credentials", token_url = "{issuer}/token",
        client_id = op.clients.cc.id, client_secret = op.clients.cc.secret, scope = "api:read",
        extra_params = { resource = "{issuer}/api" } },
      refresh = { cooldown = 0.5 },
    }:account { id = fresh_id("cc"), parameters = { issuer = op.issuer }, store = s }
    assert.equal(200, assert(acct:get("/api/me")).status)
    assert.equal(1, #op.token_requests())
    socket.sleep(2.2) -- half the 4 s token is spent: due for renewal, still valid
    r.pause()
    local t0 = socket.gettime()
    local res, err = acct:get("/api/me")
    r.resume()
    assert.is_nil(err)
    assert.equal(200, res.status)
    assert.is_true(socket.gettime() - t0 < 1.5)
    assert.equal(1, #op.token_requests(), "no token request while the store's lock cannot be taken")
    socket.sleep(0.6) -- the cooldown
    assert.equal(200, assert(acct:get("/api/me")).status)
    assert.equal(2, #op.token_requests(), "the renewal resumed once Redis was back")
    assert.equal(3, op.stats().api.ok)
  end)
end)

describe("connkit.store.redis single-flight in one process", function()
  it("makes one Redis lock attempt per account for 20 callers at once", function()
    local r = helpers.peer("redis")
    local op = helpers.peer("oidc")
    op.reset()
    local s = connkit.store.redis { url = r.url, key = KEY }
    local acct = connkit.integration {
      name = "CC", key = "cc", auth = "oauth2", base_url = "{issuer}",
      parameters = { issuer = { required = true } },
      oauth2 = { grant_type = "client_credentials", token_url = "{issuer}/token",
        client_id = op.clients.cc.id, client_secret = op.clients.cc.secret, scope = "api:read",
        extra_params = { resource = "{issuer}/api" } },
    }:account { id = fresh_id("sf"), parameters = { issuer = op.issuer }, store = s }
    r.cli("CONFIG", "RESETSTAT")
    local handles = {}
    for i = 1, 20 do handles[i] = acct:prepare { url = "/api/me" }:start() end
    for i = 1, 20 do
      local res, err = handles[i]:result()
      assert.is_nil(err)
      assert.equal(200, res.status)
    end
    assert.equal(1, r.calls("set"), "SET NX (the lock) calls")
    assert.equal(1, #op.token_requests())
    assert.equal(20, op.stats().api.ok)
  end)
end)
