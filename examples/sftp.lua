--- SFTP with connkit: a pinned host key, a key login, a listing, an upload
-- with a progress bar on the terminal, and a download.
--
-- Against your own server:
--   SFTP_HOST=files.example.com SFTP_PORT=22 SFTP_USER=me \
--   SFTP_KEY=~/.ssh/id_ed25519 SFTP_HOST_KEY=SHA256:... SFTP_DIR=/upload \
--   sh tools/run-lua.sh examples/sftp.lua
-- (SFTP_HOST_KEY is what `ssh-keygen -l -E sha256 -f <host key>.pub` prints
-- on the server, or `ssh-keyscan host | ssh-keygen -l -E sha256 -f -`.)
-- Without SFTP_HOST it starts the test suite's own sshd on 127.0.0.1.
local connkit = require "connkit"

local function say(fmt, ...) io.write(fmt:format(...), "\n") end

-- A one-line progress bar, redrawn in place.
local function progress_bar(label)
  local last = -1
  return function(done, total)
    local pct = total > 0 and math.floor(done * 100 / total) or 100
    if pct == last then return end
    last = pct
    local width = 30
    local fill = math.floor(pct * width / 100)
    io.write(("\r%-8s [%s%s] %3d%% %7.1f MiB"):format(label, ("#"):rep(fill), ("."):rep(width - fill),
      pct, done / 1048576))
    if done >= total then io.write("\n") end
    io.flush()
  end
end

-- An environment variable, or nil when unset or empty (an empty credential
-- is an error, not "no credential").
local function env(name)
  local v = os.getenv(name)
  if v ~= nil and v ~= "" then return v end
  return nil
end

local peer, stop = nil, function() end
local cfg = {
  host = env("SFTP_HOST"), port = tonumber(env("SFTP_PORT") or "22"),
  user = env("SFTP_USER"), key = env("SFTP_KEY"), passphrase = env("SFTP_KEY_PASSPHRASE"),
  host_key = env("SFTP_HOST_KEY"), dir = env("SFTP_DIR"),
}
if not cfg.host then
  local helpers = require "helpers"
  peer = helpers.peer("sshd")
  stop = helpers.stop_peers
  cfg = { host = peer.host, port = peer.port, user = peer.user, key = peer.keys.ed25519.path,
    host_key = peer.host_keys["ssh-ed25519"].fingerprint, dir = peer.dir }
  say("started a test sshd on %s port %d", cfg.host, cfg.port)
end

local ok, err = pcall(function()
  local files = connkit.integration {
    name = "Example file drop", key = "filedrop", auth = "sftp",
    parameters = { host = { required = true }, port = { default = "22" } },
    sftp = {
      host = "{host}", port = "{port}",
      host_key = cfg.host_key,       -- pinned: checked before any credential is sent
      timeout = 15,                  -- seconds, for every blocking step
    },
  }
  local acct = files:account {
    parameters = { host = cfg.host, port = tostring(cfg.port) },
    credentials = { username = cfg.user, private_key = cfg.key, passphrase = cfg.passphrase },
  }

  -- a bad key gives key_file / key_format / key_passphrase, naming the file
  local s, cerr = acct:sftp()
  if not s then error(("connect failed [%s]: %s"):format(cerr.code, cerr.message), 0) end
  say("connected: %s", tostring(s))
  local dir = cfg.dir or s:realpath(".")

  -- a local file to send
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  local block = ("connkit sftp example\n"):rep(4096)
  for _ = 1, 512 do f:write(block) end -- 42 MiB
  f:close()

  local remote = dir .. "/connkit example.txt"
  assert(s:put(tmp, remote, { progress = progress_bar("upload") }))

  say("\n%s:", dir)
  for entry in s:dir(dir) do
    say("  %-5s %10s  %s  %s", entry.type, entry.size or "?", os.date("%Y-%m-%d %H:%M", entry.mtime or 0), entry.name)
  end

  local back = tmp .. ".back"
  assert(s:get(remote, back, { progress = progress_bar("download") }))

  -- a remote file used like an io file
  local rf = assert(s:open(remote, "r"))
  say("first line: %q", rf:read("l"))
  rf:close()

  -- errors are values with stable codes
  local st, serr = s:stat(dir .. "/no such file")
  say("stat of a missing file: %s [%s]", tostring(st), serr.code)

  assert(s:remove(remote))
  s:close()
  os.remove(tmp)
  os.remove(back)
  say("done")
end)
stop()
if not ok then
  io.stderr:write("example failed: ", tostring(err), "\n")
  os.exit(1)
end
