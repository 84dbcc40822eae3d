--- OpenSSH sshd as an SFTP peer on free 127.0.0.1 ports, with host keys and
-- client keys made for the run.
--
-- As root: a test user (connkit-sftp, shell /bin/sh) with a random password
-- (made once per machine, kept root-only in /var/lib/connkit-sftp-test), and a second sshd with UsePAM yes serves keyboard-interactive
-- (OpenSSH offers it only through PAM on Linux). Without root the current
-- user logs in with keys only (info.password is nil, info.port_kbd is nil).
--
-- A third sshd (port_legacy, log_legacy) offers only legacy algorithms; a
-- fourth (port_one_session) allows one session channel per connection.
--
-- info: host, port, port_kbd, port_legacy, port_one_session, user, password, dir (a directory the user
-- owns, for the specs' files), keys (name -> { path, pass }), host_keys
-- (type -> { pub = "type base64", fingerprint = "SHA256:..." }), log (the
-- main sshd's log, LogLevel DEBUG1), pid (the main sshd), stop().
local USER = "connkit-sftp"
local PWDIR = "/var/lib/connkit-sftp-test"

return function(helpers)
  local q = helpers.shell_quote
  local function sh(cmd)
    local ok, out = helpers.run(cmd)
    if not ok then error("sshd peer: `" .. cmd .. "` failed:\n" .. out, 2) end
    return out
  end

  local root = sh("id -u"):match("%d+") == "0"
  local base = helpers.tmpdir("sshd")
  sh("chmod 755 " .. q(base))
  local user, password
  if root then
    user = USER
    if not helpers.execute("id " .. USER .. " >/dev/null 2>&1") then
      sh("useradd -m -s /bin/sh " .. USER)
    end
    -- one random password per machine, kept root-only: runs that overlap
    -- (several `make test` at once) must not change it under each other
    local pwfile = PWDIR .. "/password"
    password = (helpers.read_file(pwfile) or ""):match("^(%x+)")
    if not password then
      sh("mkdir -p " .. PWDIR .. " && chmod 700 " .. PWDIR)
      password = sh("openssl rand -hex 12"):match("%x+")
      sh("umask 077 && printf %s " .. q(password) .. " > " .. q(pwfile))
    end
    sh("echo " .. q(USER .. ":" .. password) .. " | chpasswd")
    sh("mkdir -p /run/sshd && chmod 755 /run/sshd")
  else
    user = sh("id -un"):match("%S+")
  end

  local dir = base .. "/files"
  sh("mkdir -p " .. q(dir))
  if root then sh("chown " .. USER .. " " .. q(dir)) end

  -- host keys
  local host_keys = {}
  for _, t in ipairs({ "ed25519", "ecdsa" }) do
    local f = base .. "/ssh_host_" .. t .. "_key"
    sh(("ssh-keygen -q -t %s -N '' -f %s"):format(t, q(f)))
    local pub = helpers.read_file(f .. ".pub"):match("^(%S+ %S+)")
    local fp = sh("ssh-keygen -l -E sha256 -f " .. q(f .. ".pub")):match("(SHA256:%S+)")
    host_keys[pub:match("^%S+")] = { pub = pub, fingerprint = fp, path = f }
  end

  -- client keys: OpenSSH and PEM formats, with and without a passphrase
  local keys = {}
  local auth = {}
  local function key(name, args, pass)
    local f = base .. "/id_" .. name
    sh(("ssh-keygen -q %s -N %s -C %s -f %s"):format(args, q(pass or ""), name, q(f)))
    keys[name] = { path = f, pass = pass }
    auth[#auth + 1] = helpers.read_file(f .. ".pub")
  end
  key("ed25519", "-t ed25519")
  key("ed25519_pass", "-t ed25519", "correct horse battery")
  key("ecdsa", "-t ecdsa -b 256")
  key("ecdsa_pem", "-t ecdsa -b 384 -m PEM")
  key("ecdsa_pem_pass", "-t ecdsa -b 521 -m PEM", "pem passphrase")
  key("rsa", "-t rsa -b 2048")
  -- a key the server does not know
  local f = base .. "/id_stranger"
  sh(("ssh-keygen -q -t ed25519 -N '' -f %s"):format(q(f)))
  keys.stranger = { path = f }
  helpers.write_file(base .. "/authorized_keys", table.concat(auth))
  sh("chmod 644 " .. q(base .. "/authorized_keys"))

  -- sshd takes the first value of a keyword: `extra` goes first
  local function config(port, extra)
    local lines = {}
    for _, l in ipairs(extra) do lines[#lines + 1] = l end
    for _, l in ipairs({
      "Port " .. port,
      "ListenAddress 127.0.0.1",
      "HostKey " .. host_keys["ssh-ed25519"].path,
      "HostKey " .. host_keys["ecdsa-sha2-nistp256"].path,
      "PidFile none",
      "AuthorizedKeysFile " .. base .. "/authorized_keys",
      "StrictModes no",
      "Subsystem sftp internal-sftp",
      "LogLevel DEBUG1",
      "MaxAuthTries 30",
      "MaxStartups 100:30:200",
      "UseDNS no",
      "PermitRootLogin no",
      "AllowUsers " .. user,
    }) do lines[#lines + 1] = l end
    local path = base .. "/sshd_config_" .. port
    helpers.write_file(path, table.concat(lines, "\n") .. "\n")
    return path
  end

  local procs = {}
  local function start(name, port, extra)
    local cfg = config(port, extra)
    local proc = helpers.spawn(name, ("/usr/sbin/sshd -D -e -f %s"):format(q(cfg)),
      { log = base .. "/" .. name .. ".log" })
    procs[#procs + 1] = proc
    helpers.wait_port(port, 15, proc)
    return proc
  end

  local port = helpers.free_port()
  local main = start("sshd", port, {
    "UsePAM no",
    "PasswordAuthentication " .. (root and "yes" or "no"),
    "KbdInteractiveAuthentication no",
    "PubkeyAuthentication yes",
  })
  -- a server with only legacy algorithms; DEBUG2 logs what clients offer
  local port_legacy = helpers.free_port()
  start("sshd-legacy", port_legacy, {
    "LogLevel DEBUG2",
    "Ciphers aes128-cbc,3des-cbc",
    "MACs hmac-sha1",
    "KexAlgorithms diffie-hellman-group14-sha1",
    "UsePAM no",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PubkeyAuthentication yes",
  })
  -- one session channel per connection: no second SFTP channel, so no
  -- posix-rename (the fallback of rename{overwrite})
  local port_one_session = helpers.free_port()
  start("sshd-one-session", port_one_session, {
    "MaxSessions 1",
    "UsePAM no",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PubkeyAuthentication yes",
  })
  local port_kbd
  if root then
    port_kbd = helpers.free_port()
    start("sshd-kbd", port_kbd, {
      "UsePAM yes",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication yes",
      "PubkeyAuthentication no",
    })
  end

  local info
  info = {
    host = "127.0.0.1",
    port = port,
    port_kbd = port_kbd,
    port_legacy = port_legacy,
    port_one_session = port_one_session,
    log_legacy = base .. "/sshd-legacy.log",
    user = user,
    password = password,
    root = root,
    base = base,
    dir = dir,
    keys = keys,
    host_keys = host_keys,
    log = main.log,
    pid = main.pid,     -- the main sshd (connections run in its children)
    -- The sshd processes serving connections (the main sshd's children), as
    -- a set of PID strings: take one before connecting, then signal what is new.
    connections = function()
      local _, out = helpers.run("pgrep -P " .. main.pid .. " || true")
      local set = {}
      for pid in out:gmatch("%d+") do set[pid] = true end
      return set
    end,
    stop = function()
      for i = #procs, 1, -1 do helpers.stop(procs[i]) end
      helpers.execute("rm -rf " .. q(base)) -- keys, logs and the specs' big files
    end,
  }
  --- The processes of the connections made since `before` (a set from
  -- connections()): `sshd` lists each connection's monitor and session
  -- process, `subsystem` the session's children (internal-sftp runs in one,
  -- fed through a pipe: killed alone, the session leaves it to apply what
  -- the pipe still holds). Lists of PID strings. One `ps` call: the specs
  -- call this while a transfer runs, and must be quick about it.
  function info.connection_processes(before)
    local _, out = helpers.run("ps -e -o pid=,ppid=")
    local kids = {}
    for pid, ppid in out:gmatch("(%d+)%s+(%d+)") do
      kids[ppid] = kids[ppid] or {}
      table.insert(kids[ppid], pid)
    end
    local sshd, subsystem = {}, {}
    for _, pid in ipairs(kids[tostring(main.pid)] or {}) do
      if not before[pid] then
        sshd[#sshd + 1] = pid
        for _, c in ipairs(kids[pid] or {}) do
          sshd[#sshd + 1] = c
          for _, g in ipairs(kids[c] or {}) do subsystem[#subsystem + 1] = g end
        end
      end
    end
    return { sshd = sshd, subsystem = subsystem }
  end
  --- Sends `sig` ("STOP", "CONT", "KILL") to a list of PIDs (a peer's own).
  function info.signal(pids, sig)
    if #pids == 0 then error("sshd peer: no process to signal", 2) end
    assert(helpers.execute("kill -" .. sig .. " " .. table.concat(pids, " ")))
  end
  --- Sends `sig` to every process (monitor, session, subsystem) of the
  -- connections made since `before`; returns their PIDs. Raises when there
  -- are none.
  function info.signal_connections(before, sig)
    local procs = info.connection_processes(before)
    local pids = procs.sshd
    for _, pid in ipairs(procs.subsystem) do pids[#pids + 1] = pid end
    if #pids == 0 then error("sshd peer: no process of a new connection", 2) end
    info.signal(pids, sig)
    return pids
  end
  return info
end
