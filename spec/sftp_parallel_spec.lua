-- SFTP throughput levers against a real sshd (spec/peers/sshd.lua): the SSH
-- socket's TCP_NODELAY, and `parallel = n` on get/put (one file split across
-- several SFTP sessions): the file arrives identical, the .part is gone,
-- a failure keeps the old file, resume works, progress is monotonic, and
-- the server saw several sessions.
local helpers = require "helpers"
local connkit = require "connkit"
local socket = require "socket"
local q = helpers.shell_quote
local file_size = helpers.file_size

local info, work, acct

setup(function()
  info = helpers.peer("sshd")
  work = helpers.tmpdir("sftp-parallel")
  local integ = connkit.integration {
    name = "SFTP parallel", key = "sftpparallel", auth = "sftp",
    sftp = { host = "127.0.0.1", port = info.port, host_key = info.host_keys["ssh-ed25519"].fingerprint, timeout = 10 },
  }
  acct = integ:account { credentials = { username = info.user, private_key = info.keys.ed25519.path } }
end)

teardown(function()
  if work then helpers.execute("rm -rf " .. q(work)) end
end)

describe("sftp socket", function()
  it("has TCP_NODELAY set (libssh2 does not set it)", function()
    local s = assert(acct:sftp())
    assert.is_true(s._s:tcp_nodelay())
    s:close()
  end)
end)

local MiB = 1024 * 1024
local SIZE = 3 * 8 * MiB + 12345 -- three parts of at least 8 MiB
-- the failure specs kill the parts' connections from the first progress
-- call (64 KiB in); the parts run on meanwhile, so they get more to do
local BIG = 3 * 24 * MiB + 777

local function sha256(path) return helpers.file_sha256(path) end

-- A local file of `size` random bytes.
local function random_file(name, size)
  local path = work .. "/" .. name
  assert(helpers.run(("head -c %d /dev/urandom > %s"):format(size, q(path))))
  return path
end

-- The SHA-256 of the first n bytes of path.
local function head_sha256(path, n)
  local ok, out = helpers.run(("head -c %d %s | sha256sum"):format(n, q(path)))
  assert(ok, out)
  return out:match("^(%x+)")
end

-- True when the process has exited (gone, or a zombie not yet reaped).
local function ended(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return true end
  local state = f:read("*l"):match("^%d+ %b() (%a)")
  f:close()
  return state == "Z"
end

-- Logins the sshd peer has logged so far (one per connection).
local function logins()
  local text = helpers.read_file(info.log) or ""
  local c = 0
  for _ in text:gmatch("Accepted publickey for") do c = c + 1 end
  return c
end

-- A file the server holds (owned by the login user when run as root).
local function remote_copy(src, name)
  local dst = info.dir .. "/" .. name
  assert(helpers.run(("cp %s %s && chmod 644 %s"):format(q(src), q(dst), q(dst))))
  if info.root then assert(helpers.run("chown " .. q(info.user) .. " " .. q(dst))) end
  return dst
end

-- How many descriptors this process has open.
local function open_fds()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*l"):match("^(%d+)")
  f:close()
  return tonumber(helpers.sh("ls /proc/" .. pid .. "/fd | wc -l"):match("%d+"))
end

-- Runs transfer(progress) with a progress function that calls strike()
-- once, at its first call, while the parts run; returns the transfer's
-- results and what strike returned. A transfer whose parts all finished
-- before the strike landed (a busy machine can be that slow to call back)
-- shows nothing: it is set up and run again, up to 3 times.
local function struck(transfer, strike)
  for _ = 1, 3 do
    local hit
    local moved, err = transfer(function()
      if hit == nil then hit = strike() end
    end)
    if moved == nil then return moved, err, hit end
  end
  error("the transfer finished before the strike, 3 times")
end

-- A progress function that records what it sees and checks it only grows.
local function recorder()
  local seen = {}
  return seen, function(done, total)
    assert(total == SIZE, "total " .. tostring(total))
    assert(#seen == 0 or done >= seen[#seen], "progress went back")
    seen[#seen + 1] = done
  end
end

describe("sftp parallel get", function()
  it("splits the file across sessions; it arrives identical, .part and marker gone", function()
    local src = random_file("pget-src.bin", SIZE)
    local rsrc = remote_copy(src, "pget-src.bin")
    local target = work .. "/pget.bin"
    local s = assert(acct:sftp())
    local before, fds = logins(), open_fds()
    local seen, progress = recorder()
    assert.equals(SIZE, s:get(rsrc, target, { parallel = 3, progress = progress }))
    assert.equals(before + 2, logins()) -- two more sessions for parts 2 and 3
    assert.equals(fds, open_fds())
    assert.equals(sha256(src), sha256(target))
    assert.is_nil(io.open(target .. ".part"))
    assert.is_nil(io.open(target .. ".part.parallel"))
    assert.is_true(#seen >= 2)
    assert.equals(SIZE, seen[#seen])
    -- the caller's session still works, and a small file goes as one stream
    local small = remote_copy(random_file("small.bin", 3 * MiB), "small.bin")
    before = logins()
    assert.equals(3 * MiB, s:get(small, work .. "/small-got.bin", { parallel = 4 }))
    assert.equals(before, logins())
    assert.equals(sha256(small), sha256(work .. "/small-got.bin"))
    s:close()
  end)

  it("goes in fewer parts when no further session can be had", function()
    local src = random_file("pget-few-src.bin", SIZE)
    local rsrc = remote_copy(src, "pget-few-src.bin")
    local key = work .. "/id_gone"
    assert(helpers.run(("cp %s %s && chmod 600 %s"):format(q(info.keys.ed25519.path), q(key), q(key))))
    local integ = connkit.integration {
      name = "SFTP parallel gone", key = "sftpparallelgone", auth = "sftp",
      sftp = { host = "127.0.0.1", port = info.port, host_key = info.host_keys["ssh-ed25519"].fingerprint, timeout = 10 },
    }
    local s = assert(integ:account { credentials = { username = info.user, private_key = key } }:sftp())
    os.remove(key) -- the next logins fail before connecting
    local before = logins()
    assert.equals(SIZE, s:get(rsrc, work .. "/pget-few.bin", { parallel = 3 }))
    assert.equals(before, logins())
    assert.equals(sha256(src), sha256(work .. "/pget-few.bin"))
    assert.is_nil(io.open(work .. "/pget-few.bin.part.parallel"))
    s:close()
  end)

  it("keeps the old file when a part's connection dies, and resume finishes it", function()
    local src = random_file("pget-fail-src.bin", BIG)
    local rsrc = remote_copy(src, "pget-fail-src.bin")
    local target = work .. "/pget-fail.bin"
    local s = assert(acct:sftp())
    local others = info.connections() -- the caller's session's connection is here
    local _, err, killed = struck(function(progress)
      helpers.write_file(target, "the old file\n")
      return s:get(rsrc, target, { parallel = 3, chunk_size = 65536, progress = progress })
    end, function() return info.signal_connections(others, "KILL") end)
    assert.is_truthy(killed)
    assert.is_table(err)
    assert.equals("connection", err.code)
    assert.equals("the old file\n", helpers.read_file(target))
    -- .part holds a gap-free prefix of the file, and says so (no marker)
    local have = file_size(target .. ".part")
    assert.is_true(have ~= nil and have < BIG)
    assert.equals(head_sha256(src, have), sha256(target .. ".part"))
    assert.is_nil(io.open(target .. ".part.parallel"))
    -- resume moves what is missing, over parts again
    assert.equals(BIG - have, s:get(rsrc, target, { parallel = 3, resume = true }))
    assert.equals(sha256(src), sha256(target))
    assert.is_nil(io.open(target .. ".part"))
    s:close()
  end)

  it("does not resume from a .part left with gaps (marker present)", function()
    local src = random_file("pget-gap-src.bin", SIZE)
    local rsrc = remote_copy(src, "pget-gap-src.bin")
    local target = work .. "/pget-gap.bin"
    helpers.write_file(target .. ".part", string.rep("x", 5 * MiB))
    helpers.write_file(target .. ".part.parallel", "")
    local s = assert(acct:sftp())
    assert.equals(SIZE, s:get(rsrc, target, { resume = true })) -- from the start, one stream
    assert.equals(sha256(src), sha256(target))
    assert.is_nil(io.open(target .. ".part.parallel"))
    s:close()
  end)

  it("refuses to let the progress callback use the busy session", function()
    local src = random_file("pget-busy-src.bin", SIZE)
    local rsrc = remote_copy(src, "pget-busy-src.bin")
    local s = assert(acct:sftp())
    assert.has_error(function()
      s:get(rsrc, work .. "/pget-busy.bin", { parallel = 2, progress = function() s:stat(rsrc) end })
    end, nil)
    local ok, e = pcall(s.get, s, rsrc, work .. "/pget-busy.bin", { parallel = 2,
      progress = function() s:stat(rsrc) end })
    assert.is_false(ok)
    assert.matches("busy with a parallel transfer", tostring(e))
    assert.equals(SIZE, s:stat(rsrc).size) -- usable again afterwards
    s:close()
  end)
end)

describe("sftp parallel put", function()
  it("splits the file across sessions; the server's file is identical, .part and marker gone", function()
    local src = random_file("pput-src.bin", SIZE)
    local dst = info.dir .. "/pput.bin"
    local s = assert(acct:sftp())
    local before, fds = logins(), open_fds()
    local seen, progress = recorder()
    assert.equals(SIZE, s:put(src, dst, { parallel = 3, progress = progress }))
    assert.equals(before + 2, logins())
    assert.equals(fds, open_fds()) -- the local file and the extra sessions' sockets closed
    assert.equals(sha256(src), sha256(dst))
    assert.is_false(helpers.exists(dst .. ".part"))
    assert.is_false(helpers.exists(dst .. ".part.parallel"))
    assert.equals(SIZE, seen[#seen])
    s:close()
  end)

  it("keeps the old file when a part's connection dies, and resume finishes it", function()
    local src = random_file("pput-fail-src.bin", BIG)
    local dst = info.dir .. "/pput-fail.bin"
    local s = assert(acct:sftp())
    local others = info.connections()
    local moved, err = struck(function(progress)
      helpers.write_file(dst, "the old file\n")
      return s:put(src, dst, { parallel = 3, chunk_size = 65536, progress = progress })
    end, function() return info.signal_connections(others, "KILL") end)
    assert.is_nil(moved)
    assert.is_table(err)
    assert.equals("connection", err.code)
    assert.equals("the old file\n", helpers.read_file(dst))
    local have = file_size(dst .. ".part")
    assert.is_true(have ~= nil and have < BIG)
    assert.equals(head_sha256(src, have), sha256(dst .. ".part"))
    -- the marker records that prefix
    assert.equals(tostring(have), helpers.read_file(dst .. ".part.parallel"))
    assert.equals(BIG - have, s:put(src, dst, { parallel = 3, resume = true }))
    assert.equals(sha256(src), sha256(dst))
    assert.is_false(helpers.exists(dst .. ".part"))
    assert.is_false(helpers.exists(dst .. ".part.parallel"))
    s:close()
  end)

  it("resumes from the recorded prefix when a dead connection's server writes after the cut", function()
    local src = random_file("pput-late-src.bin", BIG)
    local dst = info.dir .. "/pput-late.bin"
    local s = assert(acct:sftp())
    local others = info.connections()
    local frozen = {} -- every SFTP server this spec stops: none is left stopped
    finally(function()
      if #frozen > 0 then
        local pids = table.concat(frozen, " ")
        helpers.execute("kill -CONT " .. pids .. " 2>/dev/null; kill -KILL " .. pids .. " 2>/dev/null")
      end
    end)
    -- the parts' sftp servers are frozen; the parts go on sending until
    -- their writes in flight fill the servers' pipes; then the parts' sshd
    -- processes die: the connections end, the writes in the pipes wait
    local moved, err, procs = struck(function(progress)
      return s:put(src, dst, { parallel = 3, chunk_size = 65536, progress = progress })
    end, function()
      local p = info.connection_processes(others)
      for _, pid in ipairs(p.subsystem) do frozen[#frozen + 1] = pid end
      info.signal(p.subsystem, "STOP")
      socket.sleep(0.3) -- (the parts run in threads of their own meanwhile)
      info.signal(p.sshd, "KILL")
      return p
    end)
    assert.is_nil(moved)
    assert.equals("connection", err.code)
    assert.equals(2, #procs.subsystem)
    local prefix = tonumber(helpers.read_file(dst .. ".part.parallel"))
    assert.is_true(prefix ~= nil and prefix < BIG)
    assert.equals(prefix, file_size(dst .. ".part")) -- the cut
    info.signal(procs.subsystem, "CONT") -- they apply what they had, see the end, exit
    local deadline = socket.gettime() + 10
    while not (ended(procs.subsystem[1]) and ended(procs.subsystem[2])) and socket.gettime() < deadline do
      socket.sleep(0.02)
    end
    assert.is_true(ended(procs.subsystem[1]) and ended(procs.subsystem[2]))
    if file_size(dst .. ".part") == prefix then
      -- the servers had drained their pipes before they were frozen (a busy
      -- machine can be that slow to strike): the late write they would have
      -- made is made here, past a gap, so that the resume below always
      -- faces one
      local at = prefix + math.floor((BIG - prefix) / 2) -- (inside the file: never past its size)
      local f = assert(io.open(dst .. ".part", "r+b"))
      f:seek("set", at)
      f:write(string.rep("x", math.min(65536, BIG - at)))
      f:close()
    end
    assert.is_true(file_size(dst .. ".part") > prefix) -- late writes past a gap
    assert.equals(head_sha256(src, prefix), head_sha256(dst .. ".part", prefix))
    -- resume trusts the marker, not the size
    assert.equals(BIG - prefix, s:put(src, dst, { parallel = 3, resume = true }))
    assert.equals(sha256(src), sha256(dst))
    assert.is_false(helpers.exists(dst .. ".part"))
    assert.is_false(helpers.exists(dst .. ".part.parallel"))
    s:close()
  end)
end)

describe("sftp put after a parallel put died", function()
  it("does not resume from a server .part with the marker beside it", function()
    local src = random_file("pput-gap-src.bin", SIZE)
    local dst = info.dir .. "/pput-gap.bin"
    helpers.write_file(dst .. ".part", string.rep("x", 5 * MiB))
    helpers.write_file(dst .. ".part.parallel", "")
    if info.root then
      assert(helpers.run(("chown %s %s %s"):format(q(info.user), q(dst .. ".part"), q(dst .. ".part.parallel"))))
    end
    local s = assert(acct:sftp())
    assert.equals(SIZE, s:put(src, dst, { resume = true })) -- from the start, one stream
    assert.equals(sha256(src), sha256(dst))
    assert.is_false(helpers.exists(dst .. ".part.parallel"))
    s:close()
  end)
end)

describe("sftp parallel option", function()
  it("is checked, naming the option", function()
    local s = assert(acct:sftp())
    for _, bad in ipairs({ 0, 17, 2.5, "2", true }) do
      local ok, e = pcall(s.get, s, "/x", work .. "/x", { parallel = bad })
      assert.is_false(ok)
      assert.matches("sftp:get: option 'parallel'", tostring(e))
      ok, e = pcall(s.put, s, work .. "/x", "/x", { parallel = bad })
      assert.is_false(ok)
      assert.matches("sftp:put: option 'parallel'", tostring(e))
    end
    s:close()
  end)
end)
