-- connkit sftp against a real sshd: ls, put, get, mkdir, mv, rm (asserted
-- on the server's file system), a transfer interrupted with Ctrl-C
-- (SIGINT) half-way through a slow link (the fault proxy's bandwidth
-- limit) and finished with --resume, and the progress bar: on stderr when
-- it is a terminal (script(1)), nothing when it is not.
local helpers = require "helpers"
local socket = require "socket"
local cli = require "support.cli"
local q = helpers.shell_quote

local info, fp, t, def
local SIZE = 3 * 1024 * 1024 + 77

local DEF = [[
{ "name": "Files", "key": "files", "auth": "sftp",
  "parameters": { "port": { "required": true }, "hostKey": { "required": true } },
  "sftp": { "host": "127.0.0.1", "port": "{port}", "host_key": "{hostKey}", "timeout": 20 } }
]]

local sha256, size = helpers.file_sha256, helpers.file_size

-- the account's options for a port (the sshd's own, or the proxy's)
local function acct(port)
  return ("%s -a files -p port=%d -p hostKey=%s -c username=%s -c private_key=%s"):format(q(def), port,
    q(info.host_keys["ssh-ed25519"].fingerprint), q(info.user), q(info.keys.ed25519.path))
end

local function sftp(port, args, opts) return t:run("sftp " .. acct(port) .. " " .. args, opts) end

setup(function()
  info = helpers.peer("sshd")
  fp = helpers.peer("faultproxy")
  t = cli.new("cli-sftp")
  def = t:file("files.json", DEF)
  assert(helpers.run("head -c " .. SIZE .. " /dev/urandom > " .. q(t.dir .. "/big.bin")))
  helpers.write_file(t.dir .. "/small.txt", "hello over sftp\n")
  assert(sftp(info.port, "ls " .. q(info.dir)).status == 0) -- makes the store key
end)
teardown(function() if t then t:cleanup() end end)

describe("connkit sftp", function()
  it("puts, lists, gets, renames, removes; the server's files show it", function()
    local dir = info.dir .. "/cli-ops"
    local r = sftp(info.port, "mkdir --parents " .. q(dir .. "/sub"))
    assert.equal(0, r.status, r.stderr)
    assert.is_true(helpers.execute("test -d " .. q(dir .. "/sub")))
    r = sftp(info.port, "put " .. q(t.dir .. "/small.txt") .. " " .. q(dir .. "/a.txt"))
    assert.equal(0, r.status, r.stderr)
    assert.equal("hello over sftp\n", helpers.read_file(dir .. "/a.txt"))
    assert.not_matches("ETA", r.stderr)                 -- stderr is not a terminal: no bar
    assert.is_nil(r.stderr:find("\r", 1, true))
    r = sftp(info.port, "ls " .. q(dir))
    assert.equal(0, r.status, r.stderr)
    assert.matches("\n?%- 0%d%d%d +16 [%d-]+ [%d:]+ a%.txt\n", r.stdout)
    assert.matches("d 0%d%d%d +%d+ [%d-]+ [%d:]+ sub\n", r.stdout)
    r = sftp(info.port, "mv " .. q(dir .. "/a.txt") .. " " .. q(dir .. "/b.txt"))
    assert.equal(0, r.status, r.stderr)
    assert.is_nil(helpers.read_file(dir .. "/a.txt"))
    r = sftp(info.port, "get " .. q(dir .. "/b.txt") .. " " .. q(t.dir .. "/b.txt"))
    assert.equal(0, r.status, r.stderr)
    assert.equal("hello over sftp\n", helpers.read_file(t.dir .. "/b.txt"))
    r = sftp(info.port, "rm " .. q(dir .. "/b.txt"))
    assert.equal(0, r.status, r.stderr)
    assert.is_nil(helpers.read_file(dir .. "/b.txt"))
    r = sftp(info.port, "rm " .. q(dir .. "/b.txt"))
    assert.equal(78, r.status)                           -- no_such_file, as curl
    assert.matches("^connkit: [^\n]+\n$", r.stderr)
  end)

  it("refuses a host key that does not match (exit 60)", function()
    local r = t:run("sftp " .. q(def) .. " -a wrongkey -p port=" .. info.port
      .. " -p hostKey=SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA -c username=" .. q(info.user)
      .. " -c private_key=" .. q(info.keys.ed25519.path) .. " ls /")
    assert.equal(60, r.status, r.stderr)
    assert.matches("^connkit: [^\n]+\n$", r.stderr)
  end)

  -- Starts `args` through a proxy of `rate` bytes/s in direction `dir`,
  -- waits until `part` holds at least `least` bytes, and interrupts it.
  local function interrupt(args, dir, part, least)
    local port = fp.listen(info.port, "bandwidth", 400000, dir)
    local proc = helpers.spawn("cli-transfer", t:command("sftp " .. acct(port) .. " " .. args))
    local deadline = socket.gettime() + 20
    while (size(part) or 0) < least and socket.gettime() < deadline do socket.sleep(0.02) end
    assert.is_true((size(part) or 0) >= least, "no progress: " .. (helpers.read_file(proc.log) or ""))
    assert(helpers.execute("kill -INT " .. proc.pid))
    for _ = 1, 100 do
      if not helpers.alive(proc.pid) then break end
      socket.sleep(0.05)
    end
    assert.is_false(helpers.alive(proc.pid))
    return helpers.read_file(proc.log)
  end

  for _, dir in ipairs({ "put", "get" }) do
    it(dir .. ": interrupted with Ctrl-C, then finished with --resume", function()
      local remote = info.dir .. "/cli-resume-" .. dir .. ".bin"
      local src = t.dir .. "/big.bin"
      local target, part, args
      if dir == "put" then
        target, part = remote, remote .. ".part"
        args = "put " .. q(src) .. " " .. q(remote)
      else
        assert(helpers.run("cp " .. q(src) .. " " .. q(remote) .. " && chmod 644 " .. q(remote)))
        target = t.dir .. "/got.bin"
        part = target .. ".part"
        args = "get " .. q(remote) .. " " .. q(target)
      end
      local log = interrupt(args, dir == "put" and "up" or "down", part, 300000)
      assert.matches("connkit: interrupted\n", log, 1, true)
      local had = size(part)
      assert.is_true(had >= 300000 and had < SIZE, "part: " .. tostring(had))
      assert.is_nil(size(target))                          -- nothing at the target yet
      local r = sftp(info.port, "--resume " .. args)
      assert.equal(0, r.status, r.stderr)
      -- only what was missing moved
      local moved, start = r.stderr:match(": (%d+) bytes %(resumed after (%d+) bytes%)")
      assert.is_string(moved, r.stderr)
      assert.is_true(tonumber(start) >= had)
      assert.equal(SIZE, tonumber(moved) + tonumber(start))
      assert.equal(sha256(src), sha256(target))            -- complete, byte for byte
      assert.is_nil(size(part))
    end)
  end

  it("draws a progress bar on a terminal: bytes, rate, ETA", function()
    local port = fp.listen(info.port, "bandwidth", 2000000, "up")
    local transcript, status = t:tty("sftp " .. acct(port) .. " put " .. q(t.dir .. "/big.bin") .. " "
      .. q(info.dir .. "/cli-bar.bin"), { delay = 0, linger = 0 })
    assert.equal(0, status, transcript)
    assert.matches("\rbig.bin %[[#.]+%] +%d+%% [%d.]+ %a+ of 3%.0 MiB [%d.]+ %a+/s ETA %d+:%d%d", transcript)
    assert.matches("100%", transcript, 1, true)
    assert.equal(SIZE, size(info.dir .. "/cli-bar.bin"))
  end)

  it("--resume is for get and put only", function()
    local r = sftp(info.port, "--resume ls /")
    assert.equal(1, r.status)
    assert.matches("--resume is for get and put", r.stderr, 1, true)
  end)
end)
