-- SFTP against a real OpenSSH sshd (spec/peers/sshd.lua): host-key checks,
-- every login method, every operation, large transfers checked by SHA-256
-- on both sides, resume, timeouts.
local helpers = require "helpers"
local socket = require "socket"
local connkit = require "connkit"
local q = helpers.shell_quote
local MiB = 1024 * 1024

local info         -- the sshd peer
local work         -- a local scratch directory
local n = 0

local function sha256(path)
  local ok, out = helpers.run("sha256sum " .. q(path))
  assert(ok, out)
  return out:match("^(%x+)")
end

local function log_count(pattern, log)
  local text = helpers.read_file(log or info.log) or ""
  local c = 0
  for _ in text:gmatch(pattern) do c = c + 1 end
  return c
end

-- An account of a fresh integration; `sftp` and `creds` override defaults.
local function account(sftp, creds, params)
  n = n + 1
  local block = { host = "{server}", port = "{sshport}", host_key = info.host_keys["ssh-ed25519"].fingerprint, timeout = 10 }
  for k, v in pairs(sftp or {}) do block[k] = v end
  for k, v in pairs(block) do if v == false then block[k] = nil end end
  local integ = connkit.integration {
    name = "SFTP test " .. n, key = "sftp" .. n, auth = "sftp",
    parameters = { server = { required = true }, sshport = { default = tostring(info.port) } },
    sftp = block,
  }
  return integ:account {
    parameters = params or { server = "127.0.0.1" },
    credentials = creds or { username = info.user, private_key = info.keys.ed25519.path },
  }
end

local function connect(sftp, creds, params, opts)
  return account(sftp, creds, params):sftp(opts)
end

local function remote(name) return info.dir .. "/" .. name end

setup(function()
  info = helpers.peer("sshd")
  work = helpers.tmpdir("sftp-spec")
end)

teardown(function()
  if work then helpers.execute("rm -rf " .. q(work)) end
end)

describe("sftp definition", function()
  local function def(block)
    return function()
      connkit.integration { name = "x", key = "x", auth = "sftp", sftp = block }
    end
  end

  it("needs host, and known_hosts or host_key", function()
    assert.has_error(def { port = 22, host_key = "SHA256:abc" }, nil)
    local ok, err = pcall(def { host = "h" })
    assert.is_false(ok)
    assert.matches("known_hosts", err)
  end)

  it("names an unknown field", function()
    local ok, err = pcall(def { host = "h", host_key = "SHA256:abc", colour = "red" })
    assert.is_false(ok)
    assert.matches("sftp.colour", err, 1, true)
  end)

  it("checks port and host_key", function()
    local ok, err = pcall(def { host = "h", host_key = "SHA256:abc", port = 70000 })
    assert.is_false(ok)
    assert.matches("sftp.port", err, 1, true)
    ok, err = pcall(def { host = "h", host_key = "MD5:aa:bb" })
    assert.is_false(ok)
    assert.matches("sftp.host_key", err, 1, true)
  end)

  it("checks credentials", function()
    local integ = connkit.integration { name = "x", key = "x", auth = "sftp", sftp = { host = "h", host_key = "SHA256:abc" } }
    local ok, err = pcall(integ.account, integ, { credentials = { password = "pw" } })
    assert.is_false(ok)
    assert.matches("username", err)
    ok, err = pcall(integ.account, integ, { credentials = { username = "u", password = "pw", pin = "1" } })
    assert.is_false(ok)
    assert.matches("credentials.pin", err, 1, true)
    ok, err = pcall(integ.account, integ, { credentials = { username = "u" } })
    assert.is_false(ok)
    assert.matches("password", err)
  end)
end)

describe("sftp host key", function()
  local function userauth_count() return log_count("userauth%-request for user") end

  it("connects when the pinned fingerprint matches", function()
    local s = assert(connect())
    assert.is_true(s:is_open())
    s:close()
  end)

  it("refuses a wrong pin before sending any credential", function()
    local before = userauth_count()
    local s, err = connect({ host_key = info.host_keys["ecdsa-sha2-nistp256"].fingerprint },
      { username = info.user, password = info.password or "x" })
    assert.is_nil(s)
    assert.equals("host_key_mismatch", err.code)
    assert.matches(info.host_keys["ssh-ed25519"].fingerprint, err.message, 1, true)
    socket.sleep(0.2)
    assert.equals(before, userauth_count())
  end)

  it("refuses a host missing from known_hosts", function()
    local kh = work .. "/kh_other"
    helpers.write_file(kh, "otherhost " .. info.host_keys["ssh-ed25519"].pub .. "\n")
    local before = userauth_count()
    local s, err = connect({ host_key = false, known_hosts = kh })
    assert.is_nil(s)
    assert.equals("host_key_unknown", err.code)
    assert.matches("[127.0.0.1]:" .. info.port, err.message, 1, true)
    socket.sleep(0.2)
    assert.equals(before, userauth_count())
  end)

  it("accepts [host]:port entries, plain and hashed", function()
    local kh = work .. "/kh_hashed"
    helpers.write_file(kh, "# comment\n\n"
      .. "[127.0.0.1]:" .. info.port .. " " .. info.host_keys["ssh-ed25519"].pub .. "\n")
    local s = assert(connect({ host_key = false, known_hosts = kh }))
    s:close()
    assert(helpers.run("ssh-keygen -q -H -f " .. q(kh)))
    local text = helpers.read_file(kh)
    assert.matches("\n|1|", text, 1, true)
    assert.not_matches("127.0.0.1", text, 1, true)
    s = assert(connect({ host_key = false, known_hosts = kh }))
    s:close()
  end)

  it("uses the key type known_hosts has (ECDSA only) and patterns", function()
    local kh = work .. "/kh_ecdsa"
    helpers.write_file(kh, "[127.0.0.*]:" .. info.port .. ",!10.0.0.1 " .. info.host_keys["ecdsa-sha2-nistp256"].pub .. "\n")
    local s = assert(connect({ host_key = false, known_hosts = kh }))
    s:close()
  end)

  it("reports a changed key as a mismatch", function()
    local kh = work .. "/kh_changed"
    local _, other = helpers.run("ssh-keygen -q -t ed25519 -N '' -f " .. q(work .. "/otherkey") .. " && cat " .. q(work .. "/otherkey.pub"))
    helpers.write_file(kh, "[127.0.0.1]:" .. info.port .. " " .. other:match("^(%S+ %S+)") .. "\n")
    local s, err = connect({ host_key = false, known_hosts = kh })
    assert.is_nil(s)
    assert.equals("host_key_mismatch", err.code)
  end)

  it("honours @revoked", function()
    local kh = work .. "/kh_revoked"
    helpers.write_file(kh, "[127.0.0.1]:" .. info.port .. " " .. info.host_keys["ssh-ed25519"].pub .. "\n"
      .. "@revoked * " .. info.host_keys["ssh-ed25519"].pub .. "\n")
    local s, err = connect({ host_key = false, known_hosts = kh })
    assert.is_nil(s)
    assert.equals("host_key_mismatch", err.code)
    assert.matches("revoked", err.message)
  end)

  it("reports an unreadable known_hosts file", function()
    local s, err = connect({ host_key = false, known_hosts = work .. "/nonexistent" })
    assert.is_nil(s)
    assert.equals("host_key_unknown", err.code)
  end)
end)

describe("sftp algorithms", function()
  it("offers no legacy algorithm unless asked", function()
    local before = #(helpers.read_file(info.log_legacy) or "")
    local s, err = connect({ port = info.port_legacy })
    assert.is_nil(s)
    assert.equals("negotiation", err.code)
    assert.matches("legacy_algorithms", err.message, 1, true)
    socket.sleep(0.2)
    -- what the client proposed, as the server logged it
    local seen = (helpers.read_file(info.log_legacy) or ""):sub(before + 1)
    local kex = seen:match("peer client KEXINIT proposal(.-)\n[^\n]*first_kex_follows")
    assert.is_string(kex)
    assert.matches("curve25519-sha256", kex, 1, true)
    assert.matches("aes128-ctr", kex, 1, true)
    assert.matches("hmac-sha2-256", kex, 1, true)
    for _, bad in ipairs({ "cbc", "3des", "arcfour", "hmac-md5", "hmac-sha1", "group1-sha1", "group14-sha1", "ssh-dss", "blowfish" }) do
      assert.not_matches(bad, kex, 1, true)
    end
  end)

  it("connects to an old server with legacy_algorithms = true", function()
    local kh = work .. "/kh_legacy"
    helpers.write_file(kh, "[127.0.0.1]:" .. info.port_legacy .. " " .. info.host_keys["ssh-ed25519"].pub .. "\n")
    local s = assert(connect({ port = info.port_legacy, legacy_algorithms = true, host_key = false, known_hosts = kh }))
    assert.truthy(s:stat(info.dir))
    s:close()
  end)
end)

describe("sftp login", function()
  local function accepted(what) return log_count("Accepted " .. what .. " for " .. info.user:gsub("%p", "%%%0")) end

  local function key_login(name, from_memory)
    local k = info.keys[name]
    local creds = { username = info.user, passphrase = k.pass }
    if from_memory then creds.private_key_data = helpers.read_file(k.path) else creds.private_key = k.path end
    local before = accepted("publickey")
    local s, err = connect(nil, creds)
    assert(s, err and err.message)
    assert.equals(info.dir, s:realpath(info.dir))
    s:close()
    assert.equals(before + 1, accepted("publickey"))
  end

  it("with an ed25519 key file (OpenSSH format)", function() key_login("ed25519") end)
  it("with an ed25519 key file with a passphrase", function() key_login("ed25519_pass") end)
  it("with an ECDSA key file (OpenSSH format)", function() key_login("ecdsa") end)
  it("with an ECDSA key file (PEM format)", function() key_login("ecdsa_pem") end)
  it("with an ECDSA PEM key file with a passphrase", function() key_login("ecdsa_pem_pass") end)
  it("with a key in memory", function() key_login("ed25519_pass", true) end)
  it("with a PEM key in memory", function() key_login("ecdsa_pem", true) end)

  it("refuses a wrong passphrase without showing it", function()
    local s, err = connect(nil, { username = info.user, private_key = info.keys.ed25519_pass.path, passphrase = "not the passphrase" })
    assert.is_nil(s)
    assert.equals("key_passphrase", err.code)               -- more cases: sftp_keys_spec.lua
    assert.not_matches("not the passphrase", err.message, 1, true)
    assert.matches("passphrase", err.message)
  end)

  it("refuses a key the server does not know, naming the methods offered", function()
    local s, err = connect(nil, { username = info.user, private_key = info.keys.stranger.path })
    assert.is_nil(s)
    assert.equals("auth", err.code)
    assert.matches("publickey", err.message)
  end)

  it("explains why an RSA key fails", function()
    local s, err = connect(nil, { username = info.user, private_key = info.keys.rsa.path })
    assert.is_nil(s)
    assert.equals("auth", err.code)
    assert.matches("RSA", err.message)
    assert.matches("ed25519 or ECDSA", err.message)
  end)

  describe("with a password (root only)", function()
    it("logs in", function()
      if not info.root then pending("needs root for a test user with a password") return end
      local before = accepted("password")
      local s = assert(connect(nil, { username = info.user, password = info.password }))
      assert.truthy(s:stat(info.dir))
      s:close()
      assert.equals(before + 1, accepted("password"))
    end)

    it("refuses a wrong password, naming the methods and not the password", function()
      if not info.root then pending("needs root") return end
      local s, err = connect(nil, { username = info.user, password = "not-the-password" })
      assert.is_nil(s)
      assert.equals("auth", err.code)
      assert.matches("publickey,password", err.message, 1, true)
      assert.not_matches("not-the-password", err.message, 1, true)
      assert.not_matches("not-the-password", tostring(err), 1, true)
    end)

    it("answers keyboard-interactive with the password", function()
      if not info.root then pending("needs root") return end
      local log = info.log:gsub("sshd%.log$", "sshd-kbd.log")
      local before = log_count("Accepted keyboard%-interactive", log)
      local s, err = connect({ port = info.port_kbd }, { username = info.user, password = info.password })
      assert(s, err and err.message)
      assert.truthy(s:stat(info.dir))
      s:close()
      assert.equals(before + 1, log_count("Accepted keyboard%-interactive", log))
      s, err = connect({ port = info.port_kbd }, { username = info.user, password = "bad password" })
      assert.is_nil(s)
      assert.equals("auth", err.code)
      assert.matches("keyboard-interactive", err.message, 1, true)
    end)
  end)
end)

describe("sftp timeouts", function()
  it("gives up on a peer that accepts and never answers", function()
    local dead = assert(socket.bind("127.0.0.1", 0)) -- listens; the kernel accepts
    local _, port = dead:getsockname()
    local t0 = socket.gettime()
    local s, err = connect({ port = tonumber(port), timeout = 1 })
    local took = socket.gettime() - t0
    dead:close()
    assert.is_nil(s)
    assert.equals("timeout", err.code)
    assert.is_true(took >= 0.9 and took < 5, "took " .. took)
  end)

  it("gives up on a server that stops answering mid-session", function()
    local before = info.connections()
    local s = assert(connect())
    assert.truthy(s:stat(info.dir))
    local f = assert(s:open(remote("frozen.txt"), "w"))
    local iter = assert(s:dir(info.dir))
    s:set_timeout(1)
    -- freeze this connection's sshd processes (the monitor and its child)
    local frozen = info.signal_connections(before, "STOP")
    local t0 = socket.gettime()
    local st, err = s:stat(info.dir)
    local took = socket.gettime() - t0
    helpers.execute("kill -CONT " .. table.concat(frozen, " "))
    assert.is_nil(st)
    assert.equals("timeout", err.code)
    assert.is_true(took >= 0.9 and took < 5, "took " .. took)
    assert.is_false(s:is_open())
    local t1 = socket.gettime()
    s:close()
    assert.is_true(socket.gettime() - t1 < 1)
    assert.has_error(function() f:write("x") end, "attempt to use a closed SFTP file")
    assert.has_error(function() iter() end)
  end)

  it("reports a refused connection", function()
    local s, err = connect({ port = helpers.free_port() })
    assert.is_nil(s)
    assert.equals("connect", err.code)
  end)

  it("tries IPv6 addresses too (::1, where nothing listens: refused)", function()
    local s, err = connect({ port = helpers.free_port() }, nil, { server = "::1" })
    assert.is_nil(s)
    assert.is_true(err.code == "connect" or err.code == "resolve") -- resolve: no IPv6 here
    if err.code == "connect" then assert.matches("::1", err.message, 1, true) end
  end)

  it("reports an unknown host", function()
    local s, err = connect(nil, nil, { server = "no-such-host.invalid" })
    assert.is_nil(s)
    assert.equals("resolve", err.code)
  end)
end)

describe("sftp operations", function()
  local s
  before_each(function() s = assert(connect()) end)
  after_each(function() if s then s:close() end end)

  it("makes, lists, stats, renames and removes, with unicode and spaces", function()
    local d = remote("dir ü ñ 日本")
    assert.is_true(s:mkdir(d .. "/a b/c", { parents = true }))
    assert.is_true(s:mkdir(d .. "/a b/c", { parents = true }))   -- exists: fine
    local ok, err = s:mkdir(d .. "/a b")
    assert.is_nil(ok)
    assert.equals("failure", err.code)
    local f = assert(s:open(d .. "/fïle one.txt", "w"))
    assert.equals(f, f:write("hello ", 42, "\n"))
    assert.is_true(f:close())
    local names = {}
    for e in s:dir(d) do names[e.name] = e end
    assert.equals("dir", names["a b"].type)
    assert.equals("file", names["fïle one.txt"].type)
    assert.equals(9, names["fïle one.txt"].size)
    assert.is_number(names["fïle one.txt"].mtime)
    assert.equals(420, names["fïle one.txt"].mode) -- 0644
    local st = assert(s:stat(d .. "/fïle one.txt"))
    assert.equals(9, st.size)
    assert.equals("file", st.type)
    -- on disk, as the server wrote it
    assert.equals("hello 42\n", helpers.read_file(d .. "/fïle one.txt"))
    -- lstat sees a link as a link
    assert(helpers.execute("ln -s " .. q(d .. "/fïle one.txt") .. " " .. q(d .. "/link")))
    assert.equals("link", s:lstat(d .. "/link").type)
    assert.equals("file", s:stat(d .. "/link").type)
    assert.is_true(s:remove(d .. "/link"))
    -- rename, and overwrite only when asked
    assert.is_true(s:rename(d .. "/fïle one.txt", d .. "/two.txt"))
    helpers.write_file(d .. "/three.txt", "3")
    ok, err = s:rename(d .. "/two.txt", d .. "/three.txt")
    assert.is_nil(ok)
    assert.equals("3", helpers.read_file(d .. "/three.txt"))
    assert.is_true(s:rename(d .. "/two.txt", d .. "/three.txt", { overwrite = true }))
    assert.equals("hello 42\n", helpers.read_file(d .. "/three.txt"))
    assert.is_nil(helpers.read_file(d .. "/two.txt"))
    -- rmdir refuses a non-empty directory
    ok, err = s:rmdir(d .. "/a b")
    assert.is_nil(ok)
    assert.is_string(err.code)
    assert.is_true(s:rmdir(d .. "/a b/c"))
    assert.is_true(s:rmdir(d .. "/a b"))
    assert.is_true(s:remove(d .. "/three.txt"))
    assert.is_true(s:rmdir(d))
  end)

  it("maps SFTP status to stable codes with the path in the message", function()
    local st, err = s:stat(remote("missing file"))
    assert.is_nil(st)
    assert.equals("no_such_file", err.code)
    assert.matches(remote("missing file"), err.message, 1, true)
    assert.equals(err.message, tostring(err))
    local f
    f, err = s:open(remote("nope/x.txt"), "r")
    assert.is_nil(f)
    assert.equals("no_such_file", err.code)
    local ok
    ok, err = s:remove(remote("missing"))
    assert.is_nil(ok)
    assert.equals("no_such_file", err.code)
    if info.root then
      f, err = s:open("/etc/connkit-forbidden", "w")
      assert.is_nil(f)
      assert.equals("permission_denied", err.code)
      assert.matches("/etc/connkit-forbidden", err.message, 1, true)
    end
    local iter
    iter, err = s:dir(remote("missing dir"))
    assert.is_nil(iter)
    assert.equals("no_such_file", err.code)
  end)

  it("closes the listing when the loop ends or breaks", function()
    for i = 1, 3 do helpers.write_file(remote("l" .. i), "x") end
    local iter, a, b, d = s:dir(info.dir)
    for _ in iter, a, b, d do end
    assert.is_false(d:is_open())
    iter, a, b, d = s:dir(info.dir)
    for _ in iter, a, b, d do break end
    if _VERSION == "Lua 5.4" then assert.is_false(d:is_open()) end
    d:close()
    d:close() -- idempotent
    local list = assert(s:list(info.dir))
    assert.is_true(#list >= 3)
  end)

  it("opens files that behave like io files", function()
    local path = remote("io test.txt")
    local localp = work .. "/io test.txt"
    local lines = {}
    for i = 1, 5000 do lines[i] = ("line %d %s"):format(i, ("x"):rep(i % 50)) end
    local text = table.concat(lines, "\n") .. "\nlast without newline"
    local rf = assert(s:open(path, "w"))
    for i = 1, #lines do rf:write(lines[i], "\n") end
    rf:write("last without newline")
    assert.is_true(rf:close())
    helpers.write_file(localp, text)
    assert.equals(text, helpers.read_file(path))
    -- the same calls on both, same answers
    local lf = assert(io.open(localp, "rb"))
    rf = assert(s:open(path, "r"))
    for _, f in ipairs({ lf, rf }) do
      assert.equals("line 1 x", f:read("l"))
      assert.equals("line 2 xx\n", f:read("L"))
      assert.equals("line", f:read(4))
      assert.equals(3, f:read("n"))
      assert.equals(0, f:seek("set"))
      assert.equals("line 1", f:read(6))
      assert.equals(6, f:seek())
      assert.equals(10, f:seek("cur", 4))
      assert.equals(#text - 4, f:seek("end", -4))
      assert.equals("line", f:read("a"))
      assert.equals("", f:read("a"))
      assert.is_nil(f:read("l"))
      assert.is_nil(f:read(1))
      f:seek("set")
      local c = 0
      for _ in f:lines() do c = c + 1 end
      assert.equals(5001, c)
      f:seek("set", 7)
      local a, b2 = f:read(1, "l")
      assert.equals("x", a)
      assert.equals("", b2)
    end
    lf:close()
    rf:close()
    -- append and read/write
    local af = assert(s:open(path, "a"))
    af:write("\nappended")
    af:close()
    assert.equals(text .. "\nappended", helpers.read_file(path))
    local wf = assert(s:open(path, "r+"))
    wf:seek("set", 0)
    wf:write("LINE")
    wf:seek("set", 0)
    assert.equals("LINE 1 x", wf:read("l"))
    wf:close()
  end)

  it("refuses a closed file or session with a clear error", function()
    local f = assert(s:open(remote("closed.txt"), "w"))
    assert.is_true(f:close())
    assert.is_true(f:close())
    assert.has_error(function() f:write("x") end, "attempt to use a closed SFTP file")
    f = assert(s:open(remote("closed.txt"), "r"))
    s:close()
    s:close()
    assert.is_false(s:is_open())
    local ok, err = pcall(f.read, f, "a")
    assert.is_false(ok)
    assert.matches("closed SFTP file", err)
    ok, err = pcall(s.stat, s, info.dir)
    assert.is_false(ok)
    assert.matches("closed SFTP session", err)
    s = nil
  end)

  it("closes files and sessions with <close> (Lua 5.4)", function()
    if _VERSION ~= "Lua 5.4" then pending("<close> is Lua 5.4 syntax") return end
    local chunk = assert(load([[
      local acct, path = ...
      local keep
      do
        local s2 <close> = assert(acct:sftp())
        do
          local f <close> = assert(s2:open(path, "w"))
          f:write("buffered until close")
        end
        keep = s2
      end
      return keep
    ]]))
    local closed = chunk(account(), remote("tbc.txt"))
    assert.is_false(closed:is_open())
    assert.equals("buffered until close", helpers.read_file(remote("tbc.txt")))
  end)

  it("stops a transfer whose progress callback closes the session", function()
    helpers.write_file(remote("two-mib.bin"), ("x"):rep(2 * MiB))
    local r, err = s:get(remote("two-mib.bin"), work .. "/closed.bin", { chunk_size = 65536,
      progress = function() s:close() end })
    assert.is_nil(r)
    assert.equals("closed", err.code)
    assert.is_nil(io.open(work .. "/closed.bin"))
    s = nil
  end)

  it("keeps the session alive while a file is open", function()
    local f = assert(s:open(remote("alive.txt"), "w"))
    s = nil
    collectgarbage()
    collectgarbage()
    assert.equals(f, f:write("still here"))
    assert.is_true(f:close())
    assert.equals("still here", helpers.read_file(remote("alive.txt")))
  end)
end)

describe("sftp transfers", function()
  local s, src, size
  setup(function()
    src = work .. "/random 64M.bin"
    size = 64 * MiB
    assert(helpers.run("head -c " .. size .. " /dev/urandom > " .. q(src)))
  end)
  before_each(function() s = assert(connect()) end)
  after_each(function() if s then s:close() end end)

  local function recorder()
    local seen = {}
    return seen, function(done, total) seen[#seen + 1] = { done, total } end
  end

  local function assert_progress(seen, from, total)
    assert.is_true(#seen > 1)
    local last = from
    for _, p in ipairs(seen) do
      assert.is_true(p[1] >= last, "progress went back")
      assert.equals(total, p[2])
      last = p[1]
    end
    assert.equals(total, seen[#seen][1])
  end

  it("puts and gets 64 MiB, checked by SHA-256 on both sides", function()
    local seen, progress = recorder()
    local dst = remote("big upload ü.bin")
    assert.equals(size, s:put(src, dst, { progress = progress }))
    assert_progress(seen, 0, size)
    local want = sha256(src)
    assert.equals(want, sha256(dst))          -- the server's copy
    assert.is_nil(helpers.read_file(dst .. ".part"))
    seen, progress = recorder()
    local back = work .. "/back ü.bin"
    assert.equals(size, s:get(dst, back, { progress = progress }))
    assert_progress(seen, 0, size)
    assert.equals(want, sha256(back))
    assert.is_nil(io.open(back .. ".part"))
  end)

  it("resumes a download cut half-way, never leaving a truncated target", function()
    local dst = remote("resume-get.bin")
    assert(helpers.execute("cp " .. q(src) .. " " .. q(dst)))
    local target = work .. "/resumed.bin"
    helpers.write_file(target, "old content")
    local ok, err = pcall(s.get, s, dst, target, { progress = function(done)
      if done >= size / 2 then error("cut at half") end
    end })
    assert.is_false(ok)
    assert.matches("cut at half", err)
    assert.equals("old content", helpers.read_file(target))   -- untouched
    local part = io.open(target .. ".part", "rb")
    local have = part:seek("end")
    part:close()
    assert.is_true(have >= size / 2 and have < size)
    assert.is_true(s:is_open())                               -- session still usable
    local seen, progress = recorder()
    assert.equals(size - have, s:get(dst, target, { resume = true, progress = progress }))  -- bytes moved now
    assert.is_true(seen[1][1] > have)                         -- continued, not restarted
    assert_progress(seen, have, size)
    assert.equals(sha256(src), sha256(target))
  end)

  it("resumes an upload cut half-way", function()
    local dst = remote("resume-put.bin")
    local ok, err = pcall(s.put, s, src, dst, { progress = function(done)
      if done >= size / 2 then error({ reason = "cut" }) end
    end })
    assert.is_false(ok)
    assert.same({ reason = "cut" }, err)                      -- the very error value
    assert.is_nil(helpers.read_file(dst))
    local st = assert(s:stat(dst .. ".part"))
    assert.is_true(st.size >= size / 2 and st.size < size)
    local seen, progress = recorder()
    assert.equals(size - st.size, s:put(src, dst, { resume = true, progress = progress }))  -- bytes moved now
    assert.is_true(seen[1][1] > st.size)
    assert_progress(seen, st.size, size)
    assert.equals(sha256(src), sha256(dst))
    assert.is_nil(s:stat(dst .. ".part"))
  end)

  it("aborts when progress returns false, and handles empty files", function()
    local dst = remote("aborted.bin")
    local r, err = s:put(src, dst, { progress = function() return false end })
    assert.is_nil(r)
    assert.equals("aborted", err.code)
    local empty = work .. "/empty"
    helpers.write_file(empty, "")
    local seen, progress = recorder()
    assert.equals(0, s:put(empty, remote("empty"), { progress = progress }))
    assert.same({ { 0, 0 } }, seen)
    assert.equals(0, s:get(remote("empty"), work .. "/empty2"))
    assert.equals("", helpers.read_file(work .. "/empty2"))
    local missing
    missing, err = s:get(remote("no such"), work .. "/x")
    assert.is_nil(missing)
    assert.equals("no_such_file", err.code)
    missing, err = s:put(work .. "/no such", remote("x"))
    assert.is_nil(missing)
    assert.equals("local_io", err.code)
  end)
end)
