--- SFTP over libssh2: the `sftp` block of a definition, credentials, and
-- sessions (connect, verify the host key, log in, file operations).
--
-- The host key is verified before any credential is sent: against an
-- OpenSSH known_hosts file (hashed entries, `[host]:port`, patterns,
-- `@revoked`) or a pinned `SHA256:` fingerprint. Every blocking call is
-- limited by `sftp.timeout`. Run-time failures return `nil, err` with a
-- stable `err.code`; misuse raises.
-- @module connkit.sftp
local core = require "connkit.core"
local errors = require "connkit.errors"
local File = require "connkit.sftp.file"
local schema = require "connkit.sftp.schema"
local sftp_login = require "connkit.sftp.login"

local raise = require("connkit.options").raise -- (at the user's line)

local M = {}

local CONNECT_OPTS = { timeout = "timeout" }
local FINGERPRINT = schema.FINGERPRINT
local whole = schema.whole

--- Validates the `sftp` block of a definition (see connkit.sftp.schema).
M.check_definition = schema.check_definition
--- Validates SFTP credentials (see connkit.sftp.schema).
M.check_credentials = schema.check_credentials

-- ---------------------------------------------------------------------------
-- Connect: host key, login

local function fail_core(account, code, msg)
  if account and account._redact then msg = account:_redact(msg) end
  return nil, errors.from_core(code, msg)
end

-- The ssh-keyscan command that shows the server's key of type ktype.
local function keyscan_hint(ktype, host, port)
  local t = ktype:match("ed25519") and "ed25519" or ktype:match("ecdsa") and "ecdsa" or "rsa"
  return ("ssh-keyscan -t %s%s %s"):format(t, port == 22 and "" or (" -p " .. tostring(port)), host)
end

-- Host-key verification: returns true, or nil and an error. `where` is the
-- known_hosts name ("host" or "[host]:port").
local function verify_host(s, def, entries, where, kh_path, host, port)
  local ktype, key, fp = s:hostkey()
  if not ktype then return nil, errors.from_core(key, fp) end
  if def.host_key and fp ~= def.host_key then
    return nil, errors.new("host_key_mismatch", ("host key of %s is %s %s, but sftp.host_key pins %s")
      :format(where, ktype, fp, def.host_key), { fingerprint = fp, key_type = ktype })
  end
  if entries then
    local other
    for _, e in ipairs(entries) do
      if e.marker == "revoked" and e.key == key then
        return nil, errors.new("host_key_mismatch", ("host key of %s (%s %s) is marked @revoked in %s")
          :format(where, ktype, fp, kh_path), { fingerprint = fp, key_type = ktype })
      end
    end
    for _, e in ipairs(entries) do
      if e.marker == nil then
        if e.type == ktype and e.key == key then return true end
        other = other or e
      end
    end
    if other then
      return nil, errors.new("host_key_mismatch", ("host key of %s (%s %s) does not match the %s key that %s"
        .. " lists for it: the server changed its key, or someone is in between")
        :format(where, ktype, fp, other.type, kh_path), { fingerprint = fp, key_type = ktype })
    end
    return nil, errors.new("host_key_unknown", ("%s is not in %s; its key is %s %s (check that fingerprint"
      .. " with the server's owner, then add the key, e.g. %s)")
      :format(where, kh_path, ktype, fp, keyscan_hint(ktype, host, port)),
      { fingerprint = fp, key_type = ktype })
  end
  return true
end

local Session = {}
Session.__index = Session
Session.__name = "connkit.sftp.session"

--- Connects, verifies the host key, logs in and starts SFTP.
-- @param account an account of an integration with auth = "sftp"
-- @tparam[opt] table opts `timeout` (seconds) overrides `sftp.timeout`
-- @return a session, or nil and an error
function M.connect(account, opts)
  opts = schema.check_opts("account:sftp", opts, CONNECT_OPTS)
  local integ = account.integration
  local def = integ.sftp
  local function fill(v)
    if type(v) == "number" then return v end
    return account:fill(v, "raw")
  end
  local host, err = fill(def.host)
  if not host then return nil, err end
  local port
  port, err = fill(def.port)
  if not port then return nil, err end
  port = whole(tonumber(port))
  if not port or port % 1 ~= 0 or port < 1 or port > 65535 then
    return nil, errors.new("template", "sftp.port does not render to a port number")
  end
  local pin
  if def.host_key then
    pin, err = fill(def.host_key)
    if not pin then return nil, err end
    if not pin:find(FINGERPRINT) then
      return nil, errors.new("template", "sftp.host_key does not render to a SHA256:... fingerprint")
    end
    pin = pin:gsub("=$", "")
  end
  local where = port == 22 and host or ("[" .. host .. "]:" .. port)
  local kh_path, entries
  if def.known_hosts then
    kh_path, err = fill(def.known_hosts)
    if not kh_path then return nil, err end
    local e, code, msg = core.known_hosts(kh_path, where)
    if not e then return fail_core(account, code, msg) end
    entries = e
  end
  -- prefer the key types known_hosts has for this host, as OpenSSH does
  local types, seen = {}, {}
  for _, e in ipairs(entries or {}) do
    if not e.marker and not seen[e.type] then seen[e.type] = true; types[#types + 1] = e.type end
  end
  local timeout = opts.timeout or def.timeout
  -- a key that cannot work is reported before anything goes out
  local key_info, kerr = sftp_login.check_key(account.credentials)
  if kerr then return fail_core(account, kerr.code, kerr.message) end
  local s, code, msg = core.ssh_connect(host, port, timeout,
    { legacy = def.legacy_algorithms, hostkeys = table.concat(types, ",") })
  if not s then return fail_core(account, code, msg) end
  local ok
  ok, err = verify_host(s, { host_key = pin }, entries, where, kh_path, host, port)
  if ok then ok, err = sftp_login.login(s, account.credentials, where, key_info) end
  if ok then
    local c, m
    ok, c, m = s:sftp_init()
    if not ok then err = errors.from_core(c, m) end
  end
  if not ok then
    s:close()
    if account._redact then err.message = account:_redact(err.message) end
    return nil, err
  end
  return setmetatable({ _s = s, host = host, port = port, user = account.credentials.username,
    chunk_size = def.chunk_size, _account = account, _timeout = opts.timeout }, Session)
end

-- ---------------------------------------------------------------------------
-- Session

local MKDIR_OPTS = { parents = "boolean", mode = "mode" }
local RENAME_OPTS = { overwrite = "boolean" }

-- Raises (at the user's call) unless the path argument is a string.
local function check_path(what, path, name)
  return schema.check_string("sftp:" .. what, name or "path", path)
end

local function wrap(ok, code, msg)
  if ok == nil then return nil, errors.from_core(code, msg) end
  return ok
end

function Session:__tostring()
  return ("connkit.sftp.session %s@%s:%d (%s)"):format(self.user, self.host, self.port,
    self._s:is_open() and "open" or "closed")
end

--- Closes the session and every file and listing still open on it.
-- Idempotent; also runs from `<close>` and garbage collection.
-- @treturn boolean true
function Session:close()
  self._s:close()
  return true
end
Session.__close = Session.close
-- no __gc here: the core session closes itself when collected, and only
-- once no file or listing opened on it is left

--- Sets the time limit (seconds) for each blocking step from now on.
-- @tparam number seconds the limit (a timeout: 0.001 s to a day)
-- @treturn boolean true
-- @raise for a bad number
function Session:set_timeout(seconds)
  schema.check_timeout("sftp:set_timeout", "seconds", seconds)
  self._s:set_timeout(seconds)
  self._timeout = seconds
  return true
end

-- Another session like this one (same account, time limit): for the parts
-- of a parallel transfer (connkit.sftp.parallel).
function Session:_another()
  return M.connect(self._account, { timeout = self._timeout })
end

--- True while the session is usable.
-- @treturn boolean
function Session:is_open() return self._s:is_open() end

--- Attributes of a path (follows links): name-less entry table, or nil, err.
-- @tparam string path the remote path
-- @treturn[1] table type ("file" | "dir" | "link" | "other"), size, mtime,
--   mode, atime, uid, gid
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error ("no_such_file", "permission_denied", ...)
-- @raise when path is not a non-empty string
function Session:stat(path) return wrap(self._s:stat(check_path("stat", path), false)) end

--- Attributes of a path itself (does not follow a link), or nil, err.
-- @tparam string path the remote path
-- @treturn[1] table the attributes, as for stat
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
-- @raise when path is not a non-empty string
function Session:lstat(path) return wrap(self._s:stat(check_path("lstat", path), true)) end

--- The absolute form of a remote path (e.g. "." is the login directory).
-- @tparam[opt="."] string path the remote path
-- @treturn[1] string the absolute path
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function Session:realpath(path) return wrap(self._s:realpath(check_path("realpath", path or "."))) end

--- Removes a file.
-- @tparam string path the remote path
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
-- @raise when path is not a non-empty string
function Session:remove(path) return wrap(self._s:remove(check_path("remove", path))) end

--- Removes an empty directory.
-- @tparam string path the remote path
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
-- @raise when path is not a non-empty string
function Session:rmdir(path) return wrap(self._s:rmdir(check_path("rmdir", path))) end

--- Creates a directory. opts: `parents = true` creates the missing parents
-- and accepts an existing directory (like mkdir -p); `mode` (default 0755).
-- @tparam string path the remote path
-- @tparam[opt] table opts `parents` (boolean), `mode` (integer, 0 to 4095)
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
-- @raise for a bad path or option
function Session:mkdir(path, opts)
  check_path("mkdir", path)
  opts = schema.check_opts("sftp:mkdir", opts, MKDIR_OPTS)
  local mode = whole(opts.mode or 493)
  if not opts.parents then return wrap(self._s:mkdir(path, mode)) end
  local st = self._s:stat(path, false)
  if st and st.type == "dir" then return true end
  local prefix = path:sub(1, 1) == "/" and "/" or ""
  local sofar = prefix
  for part in path:gmatch("[^/]+") do
    sofar = (sofar == "" or sofar == "/") and (sofar .. part) or (sofar .. "/" .. part)
    local cur = self._s:stat(sofar, false)
    if not cur then
      local ok, code, msg = self._s:mkdir(sofar, mode)
      if not ok then
        cur = self._s:stat(sofar, false) -- made meanwhile?
        if not (cur and cur.type == "dir") then return nil, errors.from_core(code, msg) end
      end
    elseif cur.type ~= "dir" then
      return nil, errors.new("not_a_directory", "mkdir " .. path .. ": " .. sofar .. " is not a directory")
    end
  end
  return true
end

--- Renames a file or directory. opts: `overwrite = true` replaces an
-- existing file at `to` (SFTP v3 servers refuse that by themselves): in one
-- atomic step with the server's posix-rename@openssh.com (OpenSSH), else
-- by removing it first (see README: the window where `to` is missing).
-- @tparam string from the remote path to rename
-- @tparam string to the new remote path
-- @tparam[opt] table opts `overwrite` (boolean)
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
-- @raise for a bad path or option
function Session:rename(from, to, opts)
  check_path("rename", from, "from")
  check_path("rename", to, "to")
  opts = schema.check_opts("sftp:rename", opts, RENAME_OPTS)
  local ok, code, msg = self._s:rename(from, to)
  if ok then return true end
  if opts.overwrite and code ~= "timeout" and code ~= "connection" then
    local st = self._s:stat(to, true)
    if st and st.type ~= "dir" and self._s:stat(from, true) then
      local pok, pcode, pmsg = self._s:posix_rename(from, to)
      if pok then return true end
      if pok == nil then return nil, errors.from_core(pcode, pmsg) end
      -- the server cannot replace atomically: remove, then rename
      local rok, rcode, rmsg = self._s:remove(to)
      if not rok then return nil, errors.from_core(rcode, rmsg) end
      return wrap(self._s:rename(from, to))
    end
  end
  return nil, errors.from_core(code, msg)
end

--- Iterates over a directory: `for entry in s:dir(path) do ... end`.
-- Each entry has name, type ("file" | "dir" | "link" | "other"), size,
-- mtime, mode (and atime, uid, gid). "." and ".." are left out. The listing
-- handle closes when the loop ends, on break (Lua 5.4 `<close>`) and on
-- garbage collection; iterating a listing closed before its end (e.g. by
-- closing the session) raises. Returns nil, err when the directory cannot
-- be opened.
-- @tparam string path the remote path
-- @return[1] the iterator (each step: an entry table), and its closing value
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function Session:dir(path)
  check_path("dir", path)
  local d, code, msg = self._s:opendir(path)
  if not d then return nil, errors.from_core(code, msg) end
  local finished = false
  local function iter()
    if finished then return nil end
    local e, c, m = d:next() -- raises once the listing (or its session) is closed
    if e then return e end
    finished = true
    d:close()
    if c then error(errors.from_core(c, m), 2) end
    return nil
  end
  return iter, nil, nil, d
end

--- All entries of a directory as a list (see dir), or nil, err.
-- @tparam string path the remote path
-- @treturn[1] table the entries
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function Session:list(path)
  check_path("list", path)
  local iter, err = self:dir(path)
  if not iter then return nil, err end
  local out = {}
  for e in iter do out[#out + 1] = e end
  return out
end

local MODES = { r = "r", w = "wct", a = "wca", ["r+"] = "rw", ["w+"] = "rwct", ["a+"] = "rwca" }

--- Opens a remote file like io.open: mode "r" | "w" | "a" | "r+" | "w+" |
-- "a+" ("b" is ignored). Returns a file object (read, write, seek, lines,
-- close, as Lua's io files) or nil, err.
-- @tparam string path the remote path
-- @tparam[opt="r"] string mode "r" | "w" | "a" | "r+" | "w+" | "a+"
-- @treturn[1] table the file
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
-- @raise for a bad path or mode
function Session:open(path, mode)
  check_path("open", path)
  mode = mode or "r"
  schema.check_string("sftp:open", "mode", mode)
  local flags = MODES[(mode:gsub("b", ""))]
  if not flags then raise("sftp:open: bad mode '" .. mode .. "' (\"r\", \"w\", \"a\", \"r+\", \"w+\" or \"a+\")") end
  local f, code, msg = self._s:open(path, flags)
  if not f then return nil, errors.from_core(code, msg) end
  return File.new(f, path, flags, self.chunk_size)
end

local transfer = require "connkit.sftp.transfer"

--- Downloads `remote` to the local file `localpath`; see connkit.sftp.transfer.
-- opts: progress(done, total), resume (bool), chunk_size.
-- @return the bytes moved by this call (with resume: what was missing), or nil, err
-- @tparam string remote the remote file
-- @tparam string localpath the local file
-- @tparam[opt] table opts progress (function(done, total)), resume (boolean),
--   chunk_size (bytes)
function Session:get(remote, localpath, opts) return transfer.get(self, remote, localpath, opts) end

--- Uploads the local file `localpath` to `remote`; see connkit.sftp.transfer.
-- opts: progress(done, total), resume (bool), chunk_size.
-- @return the bytes moved by this call (with resume: what was missing), or nil, err
-- @tparam string localpath the local file
-- @tparam string remote the remote file
-- @tparam[opt] table opts progress (function(done, total)), resume (boolean),
--   chunk_size (bytes)
function Session:put(localpath, remote, opts) return transfer.put(self, localpath, remote, opts) end

M.Session = Session
return M
