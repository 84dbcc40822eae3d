-- Regression specs for issue 10, defect 9: replies that are not HTTP give
-- the documented code "protocol" (not "internal" or "url"); a token
-- lifetime of "1e999" is clamped (the record is stored and used); temp files
-- left by crashed file-store writes are removed when a store opens the
-- directory, never a live writer's. Against the scripted peer.
local helpers = require "helpers"
local connkit = require "connkit"
local core = require "connkit.core"

local sp
local n = 0
local TEN_YEARS = 10 * 365 * 86400

local function bearer_of(r) return (r.headers.authorization or ""):match("^Bearer (.+)$") end

describe("a reply that is not HTTP", function()
  local acct
  setup(function()
    sp = helpers.peer("scripted")
    acct = connkit.integration { name = "Codes", key = "codes", auth = "none", base_url = "{base}",
      parameters = { base = { required = true } } }:account { parameters = { base = sp.url } }
  end)
  before_each(function() sp.reset() end)

  it("with a 200 KB header line gives protocol, not internal", function()
    local res, err = acct:get("/raw/huge-header")
    assert.is_nil(res)
    assert.equal("protocol", err.code)
    assert.matches("100 KB", err.message, 1, true)
    assert.is_nil(err.message:find("Out of memory", 1, true))
    assert.equal("GET", sp.last("/raw/huge-header").method)
    assert.equal(200, assert(acct:get("/status?code=200")).status) -- the engine goes on
  end)

  it("with a malformed status line gives protocol, not url", function()
    local res, err = acct:get("/raw/bad-status")
    assert.is_nil(res)
    assert.equal("protocol", err.code)
    assert.equal("GET", sp.last("/raw/bad-status").method)
    assert.equal(200, assert(acct:get("/status?code=200")).status)
  end)

  it("is not retried (the same server would say it again)", function()
    local res, err = acct:get("/raw/bad-status", { retry = { max = 3, base = 0.01 } })
    assert.is_nil(res)
    assert.equal("protocol", err.code)
    assert.equal(1, #sp.requests("/raw/bad-status"))
  end)

  it("from a token endpoint gives protocol too", function()
    n = n + 1
    local cc = connkit.integration {
      name = "Codes token " .. n, key = "codestok" .. n, auth = "oauth2", base_url = "{base}",
      parameters = { base = { required = true } },
      oauth2 = { grant_type = "client_credentials", token_url = "{base}/raw/huge-header",
        client_id = "codes-client", client_secret = "codes-s3cret" },
    }:account { parameters = { base = sp.url } }
    local _, err = cc:token()
    assert.equal("protocol", err.code)
    assert.equal("POST", sp.last("/raw/huge-header").method)
  end)
end)

describe("a token lifetime of 1e999", function()
  local dir, key
  setup(function()
    sp = helpers.peer("scripted")
    dir = helpers.tmpdir("lifetime") .. "/tokens"
    key = core.b64encode(core.random(32))
  end)
  before_each(function() sp.reset() end)

  for _, v in ipairs({ "1e999", "1e300" }) do
    it(("(expires_in %q) is clamped to 10 years: the record is stored and used"):format(v), function()
      n = n + 1
      local store = connkit.store.file(dir, { key = key })
      local acct = connkit.integration {
        name = "Lifetime " .. n, key = "lifetime" .. n, auth = "oauth2", base_url = "{base}",
        parameters = { base = { required = true } },
        oauth2 = { grant_type = "client_credentials", token_url = "{base}/token/expires-raw?v=" .. v,
          client_id = "life-client", client_secret = "life-s3cret" },
      }:account { id = "life" .. n, parameters = { base = sp.url }, store = store }
      local t0 = core.now()
      assert.equal(200, assert(acct:get("/resource")).status)
      local rec = assert(store.get("life" .. n))
      assert.equal(rec.access_token, bearer_of(sp.last("/resource")))
      assert.is_true(rec.expires_at >= t0 + TEN_YEARS - 5 and rec.expires_at <= core.now() + TEN_YEARS,
        "expires_at " .. tostring(rec.expires_at))
      local left = acct:status().expires_in
      assert.is_true(left > TEN_YEARS - 10 and left <= TEN_YEARS, "expires_in " .. tostring(left))
      -- a second account on the store reads it back and uses it
      local again = connkit.integration {
        name = "Lifetime " .. n, key = "lifetime" .. n, auth = "oauth2", base_url = "{base}",
        parameters = { base = { required = true } },
        oauth2 = { grant_type = "client_credentials", token_url = "{base}/token/expires-raw?v=" .. v,
          client_id = "life-client", client_secret = "life-s3cret" },
      }:account { id = "life" .. n, parameters = { base = sp.url }, store = connkit.store.file(dir, { key = key }) }
      assert.equal(200, assert(again:get("/resource")).status)
      assert.equal(1, #sp.requests("/token/expires-raw"))
    end)
  end

  it("at a custom token's expires_in_path is clamped too", function()
    n = n + 1
    local acct = connkit.integration {
      name = "Lifetime custom " .. n, key = "lifetimect" .. n, auth = "custom_token", base_url = "{base}",
      parameters = { base = { required = true } },
      custom_token = { token_url = "{base}/token/expires-raw?v=1e999", params = { user = "{username}" },
        expires_in_path = "expires_in" },
    }:account { parameters = { base = sp.url }, credentials = { username = "alice" },
      store = connkit.store.file(dir, { key = key }) }
    assert.equal(200, assert(acct:get("/resource")).status)
    local left = acct:status().expires_in
    assert.is_true(left > TEN_YEARS - 10 and left <= TEN_YEARS, "expires_in " .. tostring(left))
  end)
end)

describe("temp files left by crashed file-store writes", function()
  local key = core.b64encode(core.random(32))

  local function exists(path) return io.open(path, "rb") ~= nil end

  -- the PID of a process that has exited
  local function dead_pid()
    local ok, out = helpers.run("echo $$")
    assert(ok, out)
    return assert(tonumber(out:match("%d+")))
  end

  -- this process's PID (alive)
  local function own_pid()
    return assert(tonumber(assert(helpers.read_file("/proc/self/stat")):match("^%d+")))
  end

  it("are removed when a store opens the directory: old ones and those of dead writers", function()
    local dir = helpers.tmpdir("stale")
    local name = "acct-0123456789abcdef0123456789abcdef"
    local files = {
      old_legacy = dir .. "/" .. name .. ".rec.tmp.AbC123",
      old_pid = dir .. "/" .. name .. ".rec.tmp." .. own_pid() .. ".Zx9Qw1",
      dead = dir .. "/" .. name .. ".rec.tmp." .. dead_pid() .. ".Qq1Ww2",
      fresh_legacy = dir .. "/" .. name .. ".rec.tmp.Fr35h1",
      fresh_live = dir .. "/" .. name .. ".rec.tmp." .. own_pid() .. ".Li5e00",
      old_locked = dir .. "/" .. name .. ".rec.tmp." .. own_pid() .. ".Lk0ck1",
      other = dir .. "/notes.tmp.old",
    }
    for _, p in pairs(files) do helpers.write_file(p, "CKS1 sealed bytes") end
    for _, k in ipairs({ "old_legacy", "old_pid", "old_locked", "other" }) do
      assert(helpers.run("touch -d '2 hours ago' " .. helpers.shell_quote(files[k])))
    end
    -- a live writer holds a flock on its temp file until the rename
    local lk = assert(core.lock_file(files.old_locked, 0))

    local store = connkit.store.file(dir, { key = key })
    assert.is_false(exists(files.old_legacy), "an old temp file was left")
    assert.is_false(exists(files.old_pid), "an old temp file was left")
    assert.is_false(exists(files.dead), "a dead writer's temp file was left")
    assert.is_true(exists(files.fresh_legacy), "a fresh temp file was removed")
    assert.is_true(exists(files.fresh_live), "a live writer's temp file was removed")
    assert.is_true(exists(files.old_locked), "a locked (live) writer's temp file was removed")
    assert.is_true(exists(files.other), "a file that is not a record's temp file was removed")
    lk:unlock()

    -- the store works, and its own writes leave no temp file behind
    assert(store.put("x", { access_token = "t" }))
    assert.same({ access_token = "t" }, store.get("x"))
    local ok, out = helpers.run("ls -a " .. helpers.shell_quote(dir))
    assert(ok, out)
    local temps = 0
    for line in out:gmatch("[^\n]+") do
      if line:find(".rec.tmp.", 1, true) then temps = temps + 1 end
    end
    assert.equal(3, temps) -- the three that were kept, no new one
  end)

  it("of a writer killed with SIGKILL are removed at the next open", function()
    local dir = helpers.tmpdir("killed")
    local store_dir = dir .. "/store"
    local script = dir .. "/writer.lua"
    helpers.write_file(script, ([[
      local s = require("connkit.store").file(%q, { key = %q })
      local i = 0
      while true do
        i = i + 1
        s.put("acct", { access_token = ("t"):rep(4000000) .. i })
      end
    ]]):format(store_dir, key))
    -- (read in this process: a write's temp file lives a few milliseconds)
    local function temps()
      local names = {}
      local ok, iter, state = pcall(require("lfs").dir, store_dir) -- (the writer makes the directory)
      if ok then for name in iter, state do names[#names + 1] = name end end
      local out = table.concat(names, " ")
      return out:find(".rec.tmp.", 1, true) ~= nil, out
    end
    -- kill writers in the middle of a write, until one leaves a temp file
    -- behind. A plain shell (spawn drops the sanitizer preload) watches for
    -- the temp file and kills at once: a write's temp file lives a few
    -- milliseconds, less than a command started from here takes under ASan.
    local socket = require "socket"
    local seen, last_log = false, nil
    for _ = 1, 20 do
      local child = helpers.spawn("writer", helpers.lua .. " " .. helpers.shell_quote(script),
        { env = helpers.child_env() })
      local killer = helpers.spawn("killer", "sh -c " .. helpers.shell_quote(([[
        i=0
        while [ $i -lt 400000 ]; do
          for f in %s/*.rec.tmp.*; do [ -e "$f" ] && { kill -9 %d; exit 0; }; done
          i=$((i+1))
        done
        kill -9 %d]]):format(helpers.shell_quote(store_dir), child.pid, child.pid)))
      for _ = 1, 3000 do
        if not helpers.alive(child.pid) then break end
        socket.sleep(0.01)
      end
      helpers.stop(killer)
      helpers.stop(child)
      last_log = child.log
      if temps() then seen = true break end
    end
    assert.is_true(seen, "no writer was killed in the middle of a write; the last writer said: "
      .. tostring(helpers.read_file(last_log)))
    connkit.store.file(store_dir, { key = key })
    local left, out = temps()
    assert.is_false(left, "temp files left: " .. out)
  end)
end)
