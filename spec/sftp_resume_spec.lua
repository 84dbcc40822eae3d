-- SFTP get/put with resume = true against a real sshd: the call returns the
-- bytes it moved (size minus what the .part file held), and the file on the
-- other side is complete and byte for byte right.
local helpers = require "helpers"
local connkit = require "connkit"
local q = helpers.shell_quote

local info, work, s
local SIZE = 3 * 1024 * 1024 + 123

local function sha256(path)
  local ok, out = helpers.run("sha256sum " .. q(path))
  assert(ok, out)
  return out:match("^(%x+)")
end

setup(function()
  info = helpers.peer("sshd")
  work = helpers.tmpdir("sftp-resume")
  local integ = connkit.integration {
    name = "SFTP resume", key = "sftpresume", auth = "sftp",
    sftp = { host = "127.0.0.1", port = info.port, host_key = info.host_keys["ssh-ed25519"].fingerprint, timeout = 10 },
  }
  s = assert(integ:account { credentials = { username = info.user, private_key = info.keys.ed25519.path } }:sftp())
end)

teardown(function()
  if s then s:close() end
  if work then helpers.execute("rm -rf " .. q(work)) end
end)

-- A local file of SIZE random bytes and its first `have` bytes as `part`.
local function source(name, have, part)
  local src = work .. "/" .. name
  assert(helpers.run("head -c " .. SIZE .. " /dev/urandom > " .. q(src)))
  assert(helpers.run(("head -c %d %s > %s"):format(have, q(src), q(part))))
  return src
end

describe("sftp resume", function()
  it("put returns the bytes moved, and the server's file is complete", function()
    local dst = info.dir .. "/resume-count-put.bin"
    local have = 1000000
    local src = source("put.bin", have, dst .. ".part")      -- the server's .part (same file system)
    if info.root then assert(helpers.run("chown " .. q(info.user) .. " " .. q(dst .. ".part"))) end
    local seen = {}
    local moved = s:put(src, dst, { resume = true, progress = function(done) seen[#seen + 1] = done end })
    assert.equals(SIZE - have, moved)
    assert.equals(sha256(src), sha256(dst))                  -- what the server holds
    assert.is_nil(helpers.read_file(dst .. ".part"))
    assert.is_true(seen[1] > have and seen[#seen] == SIZE)   -- progress counts from the file's start
    -- without resume: the whole file
    assert.equals(SIZE, s:put(src, dst))
    assert.equals(sha256(src), sha256(dst))
  end)

  it("get returns the bytes moved, and the local file is complete", function()
    local remote = info.dir .. "/resume-count-get.bin"
    local target = work .. "/got.bin"
    local have = 2000000
    local src = source("get-src.bin", have, target .. ".part")
    assert(helpers.execute("cp " .. q(src) .. " " .. q(remote)))
    assert.equals(SIZE - have, s:get(remote, target, { resume = true }))
    assert.equals(sha256(src), sha256(target))
    assert.is_nil(io.open(target .. ".part"))
    -- a .part as large as the file: nothing to move
    assert(helpers.execute("cp " .. q(src) .. " " .. q(target .. ".part")))
    assert.equals(0, s:get(remote, target, { resume = true }))
    assert.equals(sha256(src), sha256(target))
  end)
end)
