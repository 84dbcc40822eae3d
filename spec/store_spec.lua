-- Token stores: the protocol, the memory store, and the encrypted file store
-- (encryption at rest, id binding, permissions, crash safety, cross-process
-- locking with real child processes).
local core = require "connkit.core"
local store = require "connkit.store"
local helpers = require "helpers"
local lfs = require "lfs"
local socket = require "socket"

local q = helpers.shell_quote
local LUA = os.getenv("CONNKIT_LUA") or "lua5.4"

local function new_key() return core.b64encode(core.random(32)) end

-- File names in dir (no . and ..), sorted.
local function listdir(dir)
  local names = {}
  for name in lfs.dir(dir) do
    if name ~= "." and name ~= ".." then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

-- The one file in dir ending in suffix, after `fn` created it.
local function new_file(dir, suffix, fn)
  local before = {}
  for _, n in ipairs(listdir(dir)) do before[n] = true end
  fn()
  local found
  for _, n in ipairs(listdir(dir)) do
    if not before[n] and n:sub(-#suffix) == suffix then
      assert.is_nil(found, "more than one new file")
      found = n
    end
  end
  assert.is_string(found, "no new " .. suffix .. " file")
  return dir .. "/" .. found
end

local child_env = helpers.child_env

local function wait_until(pred, timeout, what)
  local deadline = socket.gettime() + (timeout or 10)
  while socket.gettime() < deadline do
    if pred() then return true end
    socket.sleep(0.01)
  end
  error("timed out waiting for " .. (what or "condition"))
end

-- True once pid has exited (a zombie waiting to be reaped counts as gone).
local function gone(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return true end
  local stat = f:read("*a") or ""
  f:close()
  return stat:match("^%d+ %b() (%a)") == "Z"
end

local function kill9(proc)
  helpers.execute("kill -9 " .. proc.pid .. " 2>/dev/null")
  wait_until(function() return gone(proc.pid) end, 5, "process to die")
  proc.pid = nil
end

describe("store protocol", function()
  it("check accepts a table with get, put and lock", function()
    local s = { get = function() end, put = function() end, lock = function() end }
    assert.equal(s, store.check(s))
    local m = store.memory()
    assert.equal(m, store.check(m))
  end)

  it("check raises naming what is missing", function()
    local ok0, err0 = pcall(store.check, nil)
    assert.is_false(ok0)
    assert.matches("store must be a table with get, put and lock functions, got nil", err0)
    local ok, err = pcall(store.check, { get = print, put = print }, "account store")
    assert.is_false(ok)
    assert.matches("account store must have a lock function", err)
  end)
end)

describe("memory store", function()
  it("round-trips records and returns nil for an unknown id", function()
    local s = store.memory()
    assert.is_nil(s:get("prod"))
    assert.is_true(s:put("prod", { access_token = "at", expires_at = 100, scope = "a b" }))
    assert.same({ access_token = "at", expires_at = 100, scope = "a b" }, s:get("prod"))
    assert.same({ access_token = "at", expires_at = 100, scope = "a b" }, s.get("prod"))
  end)

  it("keeps its own copies", function()
    local s = store.memory()
    local rec = { access_token = "one", nested = { x = 1 } }
    s:put("a", rec)
    rec.access_token = "changed"
    rec.nested.x = 2
    local got = s:get("a")
    assert.equal("one", got.access_token)
    assert.equal(1, got.nested.x)
    got.access_token = "changed again"
    assert.equal("one", s:get("a").access_token)
  end)

  it("keeps stores apart and removes a record on put(id, nil)", function()
    local a, b = store.memory(), store.memory()
    a:put("x", { access_token = "1" })
    assert.is_nil(b:get("x"))
    assert.is_true(a:put("x", nil))
    assert.is_nil(a:get("x"))
  end)

  it("lock returns an unlock function", function()
    local s = store.memory()
    local unlock = s:lock("x")
    assert.is_function(unlock)
    unlock()
    unlock()
  end)

  it("raises on misuse", function()
    local s = store.memory()
    assert.has_error(function() s:get(1) end)
    assert.has_error(function() s:put("x", "not a table") end)
    local ok, err = pcall(s.put, s, "x", { f = print })
    assert.is_false(ok)
    assert.matches("record field record.f: a function cannot be stored", err)
    assert.has_error(function() s:lock(nil) end)
  end)
end)

describe("file store", function()
  local dir, key
  before_each(function()
    dir = helpers.tmpdir("store") .. "/tokens"
    key = new_key()
  end)
  after_each(function()
    helpers.execute("rm -rf " .. q(dir:match("^(.*)/tokens$")))
  end)

  local record = {
    access_token = "at-1234567890", refresh_token = "rt-abcdef",
    expires_at = 1763812345, scope = "read write", token_type = "Bearer",
    ratio = 0.1, exact = 1763812345.125, flag = true, id_token_claims = { sub = "u1" },
  }

  it("round-trips a record and keeps numbers exact", function()
    local s = store.file(dir, { key = key })
    assert.is_nil(s:get("prod"))
    assert.is_true(s:put("prod", record))
    local got = assert(s:get("prod"))
    assert.same(record, got)
    assert.equal(0.1, got.ratio)
    assert.equal(1763812345.125, got.exact)
    if math.type then assert.equal("integer", math.type(got.expires_at)) end
  end)

  it("works with plain function calls (store.get(id)) as connkit makes them", function()
    local s = store.file(dir, { key = key })
    assert.is_true(s.put("prod", record))
    assert.same(record, s.get("prod"))
    local unlock = s.lock("prod")
    assert.is_function(unlock)
    unlock()
    assert.is_true(s.put("prod", nil))
    assert.is_nil(s.get("prod"))
  end)

  it("survives a new store object on the same dir", function()
    store.file(dir, { key = key }):put("prod", record)
    assert.same(record, store.file(dir .. "/", { key = key }):get("prod"))
  end)

  it("encrypts: no field value appears in the file", function()
    local s = store.file(dir, { key = key })
    local path = new_file(dir, ".rec", function() s:put("prod", record) end)
    local bytes = helpers.read_file(path)
    for _, v in ipairs({ "at-1234567890", "rt-abcdef", "read write", "Bearer", "prod" }) do
      assert.is_nil(bytes:find(v, 1, true), v)
    end
    -- a fresh nonce per write: the same record seals differently
    s:put("prod", record)
    assert.are_not.equal(bytes, helpers.read_file(path))
  end)

  it("creates the directory 0700 and files 0600", function()
    local s = store.file(dir .. "/deeper", { key = key })
    assert.equal("rwx------", lfs.attributes(dir .. "/deeper", "permissions"))
    local path = new_file(dir .. "/deeper", ".rec", function() s:put("prod", record) end)
    assert.equal("rw-------", lfs.attributes(path, "permissions"))
    local lpath = new_file(dir .. "/deeper", ".lock", function() s:lock("prod")() end)
    assert.equal("rw-------", lfs.attributes(lpath, "permissions"))
  end)

  it("wrong key: store_auth, and the file is left untouched", function()
    local s = store.file(dir, { key = key })
    local path = new_file(dir, ".rec", function() s:put("prod", record) end)
    local before = helpers.read_file(path)
    local other = new_key()
    local r, err = store.file(dir, { key = other }):get("prod")
    assert.is_nil(r)
    assert.equal("store_auth", err.code)
    assert.equal(err.message, tostring(err))
    assert.is_nil(err.message:find(key, 1, true))
    assert.is_nil(err.message:find(other, 1, true))
    assert.equal(before, helpers.read_file(path))
    assert.same(record, s:get("prod"))
  end)

  it("tampered byte: store_auth, file untouched", function()
    local s = store.file(dir, { key = key })
    local path = new_file(dir, ".rec", function() s:put("prod", record) end)
    local bytes = helpers.read_file(path)
    for _, i in ipairs({ 1, 5, 10, math.floor(#bytes / 2), #bytes }) do
      local t = bytes:sub(1, i - 1) .. string.char((bytes:byte(i) + 1) % 256) .. bytes:sub(i + 1)
      helpers.write_file(path, t)
      local r, err = s:get("prod")
      assert.is_nil(r, "byte " .. i)
      assert.equal("store_auth", err.code)
      assert.equal(t, helpers.read_file(path))
    end
    helpers.write_file(path, bytes:sub(1, 20))
    local r, err = s:get("prod")
    assert.is_nil(r)
    assert.equal("store_auth", err.code)
  end)

  it("refuses a file copied onto another account's name", function()
    local s = store.file(dir, { key = key })
    local pa = new_file(dir, ".rec", function() s:put("account-a", { access_token = "A" }) end)
    local pb = new_file(dir, ".rec", function() s:put("account-b", { access_token = "B" }) end)
    local a, b = helpers.read_file(pa), helpers.read_file(pb)
    helpers.write_file(pa, b)
    helpers.write_file(pb, a)
    for _, id in ipairs({ "account-a", "account-b" }) do
      local r, err = s:get(id)
      assert.is_nil(r)
      assert.equal("store_auth", err.code)
    end
    helpers.write_file(pa, a)
    assert.equal("A", s:get("account-a").access_token)
  end)

  it("keeps any id inside the directory, one file each", function()
    local s = store.file(dir, { key = key })
    local ids = { "../../etc/passwd", "a/b", "a_b", "a b", ".", "..", "Ωμέγα", ("x"):rep(500),
      "with\0nul", "CON" }
    for i, id in ipairs(ids) do assert.is_true(s:put(id, { n = i })) end
    for i, id in ipairs(ids) do assert.equal(i, s:get(id).n) end
    local names = listdir(dir)
    assert.equal(#ids, #names)
    for _, n in ipairs(names) do
      assert.matches("^[%w%-_]+%-%x+%.rec$", n)
      assert.is_true(#n < 100)
    end
    assert.same(names, listdir(dir))
  end)

  it("removes a record on put(id, nil)", function()
    local s = store.file(dir, { key = key })
    s:put("prod", record)
    assert.is_true(s:put("prod", nil))
    assert.is_nil(s:get("prod"))
    assert.is_true(s:put("prod", nil))
  end)

  it("reads the key from key_file (base64 with newline, or 32 raw bytes)", function()
    local kdir = helpers.tmpdir("key")
    helpers.write_file(kdir .. "/b64", key .. "\n", "600")
    store.file(dir, { key = key }):put("prod", record)
    assert.same(record, store.file(dir, { key_file = kdir .. "/b64" }):get("prod"))
    helpers.write_file(kdir .. "/raw", core.b64decode(key), "600")
    assert.same(record, store.file(dir, { key_file = kdir .. "/raw" }):get("prod"))
    -- a symlink to a private key file (mounted secrets look like this)
    helpers.execute("ln -s b64 " .. q(kdir .. "/link"))
    assert.same(record, store.file(dir, { key_file = kdir .. "/link" }):get("prod"))
    helpers.execute("rm -rf " .. q(kdir))
  end)

  it("refuses a key_file that group or others can read", function()
    local kdir = helpers.tmpdir("key")
    for _, mode in ipairs({ "644", "640", "604" }) do
      helpers.write_file(kdir .. "/k", key, mode)
      local ok, err = pcall(store.file, dir, { key_file = kdir .. "/k" })
      assert.is_false(ok, mode)
      assert.matches("key_file", err)
      assert.matches("group or others", err)
      assert.is_nil(err:find(key, 1, true))
    end
    helpers.execute("mkfifo " .. q(kdir .. "/fifo") .. " && chmod 600 " .. q(kdir .. "/fifo"))
    local ok, err = pcall(store.file, dir, { key_file = kdir .. "/fifo" })
    assert.is_false(ok)
    assert.matches("not a regular file", err)
    helpers.execute("rm -rf " .. q(kdir))
  end)

  it("raises on misuse, naming the option", function()
    local function fails(pattern, ...)
      local ok, err = pcall(store.file, ...)
      assert.is_false(ok)
      assert.matches(pattern, err)
      assert.is_nil(err:find(key, 1, true))
    end
    fails("argument 'dir'", 42, { key = key })
    fails("argument 'dir'", "", { key = key })
    fails("option 'key' must decode to 32 bytes %(got 16%)", dir, { key = core.b64encode(core.random(16)) })
    fails("option 'key' is not valid base64", dir, { key = "not base64!" })
    fails("option 'key' must be a base64 string", dir, { key = 12 })
    fails("either option 'key' or option 'key_file'", dir, { key = key, key_file = "/x" })
    fails("option 'key' %(base64 of 32 bytes%) or 'key_file' is required", dir, {})
    fails("option 'key_file'", dir, { key_file = dir .. "/missing" })
    fails("unknown option 'keyfile'", dir, { key = key, keyfile = "/x" })
    fails("option 'lock_timeout'", dir, { key = key, lock_timeout = -1 })
    local s = store.file(dir, { key = key })
    assert.has_error(function() s:get(7) end)
    assert.has_error(function() s:put("x", 7) end)
    assert.has_error(function() s:put("x", { f = function() end }) end)
    assert.has_error(function() s:put("x", { n = 0 / 0 }) end)
  end)

  it("tostring shows the directory, never the key", function()
    local s = store.file(dir, { key = key })
    assert.equal("connkit.store.file(" .. dir .. ")", tostring(s))
    for k, v in pairs(s) do
      assert.is_nil(tostring(v):find(key, 1, true), k)
    end
  end)

  it("lock: a second lock in this process is refused at once, then granted after unlock", function()
    local s = store.file(dir, { key = key })
    local unlock = assert(s:lock("prod"))
    local r, err = store.file(dir, { key = key }):lock("prod")
    assert.is_nil(r)
    assert.equal("lock_busy", err.code)
    assert.is_function(s:lock("other"))
    unlock()
    unlock()
    assert.is_function(s:lock("prod"))
  end)

  it("lock: a dropped unlock function releases the lock when collected", function()
    local s = store.file(dir, { key = key })
    do s:lock("prod") end
    collectgarbage()
    collectgarbage()
    local unlock = assert(s:lock("prod", 0))
    unlock()
  end)

  describe("with child processes", function()
    local procs = {}
    after_each(function()
      for _, p in ipairs(procs) do
        if p.pid then helpers.execute("kill -9 " .. p.pid .. " 2>/dev/null") end
      end
      procs = {}
    end)

    local function spawn(name, script, args, env)
      local sdir = helpers.tmpdir(name)
      local path = sdir .. "/" .. name .. ".lua"
      helpers.write_file(path, script)
      local cmd = LUA .. " " .. q(path)
      for _, a in ipairs(args) do cmd = cmd .. " " .. q(a) end
      local p = helpers.spawn(name, cmd, { env = child_env(env) })
      procs[#procs + 1] = p
      return p
    end

    local WRITER = [[
      local core = require "connkit.core"
      local s = require("connkit.store").file(arg[1], { key = os.getenv("CK_KEY") })
      local i = 0
      while true do
        i = i + 1
        local pad = core.b64encode(core.random(1000 + (i % 64) * 500))
        assert(s:put("acct", { n = i, pad = pad, sum = core.hex(core.sha256(pad)) }))
      end
    ]]

    it("kill -9 during a write loop leaves a record that opens (old or new)", function()
      local s = store.file(dir, { key = key })
      local last = 0
      for round = 1, 5 do
        local p = spawn("writer", WRITER, { dir }, { CK_KEY = key })
        -- read while the child writes: every read sees a whole record
        wait_until(function()
          local r, err = s:get("acct")
          assert.is_nil(err)
          return r and r.n >= 30 and (round == 1 or r.n ~= last)
        end, 20, "the writer")
        socket.sleep(math.random() * 0.05)
        kill9(p)
        local r, err = s:get("acct")
        assert.is_nil(err, err and err.message)
        assert.is_number(r.n)
        assert.equal(core.hex(core.sha256(r.pad)), r.sum)
        last = r.n
      end
      -- leftover temp files (if a kill hit mid-write) do not disturb reads
      for _, n in ipairs(listdir(dir)) do
        assert.is_truthy(n:match("%.rec$") or n:match("%.rec%.tmp%.") or n:match("%.lock$"), n)
      end
      assert.is_true(s:put("acct", { n = 0 }))
      assert.equal(0, s:get("acct").n)
    end)

    local HOLDER = [[
      local s = require("connkit.store").file(arg[1], { key = os.getenv("CK_KEY") })
      local unlock = assert(s:lock("acct"))
      local f = assert(io.open(arg[2], "w")) f:write("locked") f:close()
      require("socket").sleep(tonumber(arg[3]))
      unlock()
      local g = assert(io.open(arg[2], "w")) g:write("released") g:close()
    ]]

    it("lock: two processes contend; the waiter times out, then gets it after release", function()
      local s = store.file(dir, { key = key })
      local marker = dir .. "/../marker"
      local p = spawn("holder", HOLDER, { dir, marker, "1.5" }, { CK_KEY = key })
      wait_until(function() return helpers.read_file(marker) == "locked" end, 20, "the holder")
      local t0 = socket.gettime()
      local r, err = s:lock("acct", 0.2)
      local dt = socket.gettime() - t0
      assert.is_nil(r)
      assert.equal("lock_timeout", err.code)
      assert.is_true(dt >= 0.19, "gave up after " .. dt)
      local unlock, err2 = s:lock("acct", 15)
      local waited = socket.gettime() - t0
      assert.is_function(unlock, err2 and err2.message)
      assert.equal("released", helpers.read_file(marker))
      assert.is_true(waited >= 1.0, "waited only " .. waited)
      unlock()
      wait_until(function() return gone(p.pid) end, 5, "the holder to exit")
    end)

    it("lock: a holder killed with -9 releases the lock", function()
      local s = store.file(dir, { key = key })
      local marker = dir .. "/../marker"
      local p = spawn("holder", HOLDER, { dir, marker, "60" }, { CK_KEY = key })
      wait_until(function() return helpers.read_file(marker) == "locked" end, 20, "the holder")
      assert.is_nil((s:lock("acct", 0)))
      kill9(p)
      local unlock = assert(s:lock("acct", 5))
      unlock()
    end)
  end)
end)
