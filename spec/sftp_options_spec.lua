-- SFTP options and numbers: every option of every public SFTP call is
-- checked by name and type (errors name the call and the option), empty
-- credentials are refused when the account is made, and whole numbers from
-- a JSON definition (37535.0 under Lua 5.4's cjson) work as integers against
-- the real sshd (spec/peers/sshd.lua).
local helpers = require "helpers"
local connkit = require "connkit"
local q = helpers.shell_quote

local info, work

setup(function()
  info = helpers.peer("sshd")
  work = helpers.tmpdir("sftp-opts")
end)

teardown(function()
  if work then helpers.execute("rm -rf " .. q(work)) end
end)

local n = 0
local function integration(block)
  n = n + 1
  local sftp = { host = "127.0.0.1", port = info.port, host_key = info.host_keys["ssh-ed25519"].fingerprint, timeout = 10 }
  for k, v in pairs(block or {}) do sftp[k] = v end
  for k, v in pairs(sftp) do if v == false then sftp[k] = nil end end
  return connkit.integration { name = "SFTP options " .. n, key = "sftpopt" .. n, auth = "sftp", sftp = sftp }
end

local function account(block)
  return integration(block):account { credentials = { username = info.user, private_key = info.keys.ed25519.path } }
end

-- The message of the error f raises; fails when f does not raise.
local function raised(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "no error raised")
  return tostring(err)
end

local function refuses(expect, f, ...)
  assert.matches(expect, raised(f, ...), 1, true)
end

describe("sftp options", function()
  local acct, s
  setup(function()
    acct = account()
    s = assert(acct:sftp())
  end)
  teardown(function() if s then s:close() end end)

  it("account:sftp: unknown options, and timeouts that are not 0 < t <= one day", function()
    refuses("account:sftp: unknown option 'timout'", acct.sftp, acct, { timout = 5 })
    refuses("account:sftp: options must be a table", acct.sftp, acct, 5)
    refuses("account:sftp: option 'timeout' must be a number of seconds", acct.sftp, acct, { timeout = "5" })
    refuses("account:sftp: option 'timeout'", acct.sftp, acct, { timeout = -1 })
    refuses("account:sftp: option 'timeout'", acct.sftp, acct, { timeout = 0 })
    refuses("account:sftp: option 'timeout'", acct.sftp, acct, { timeout = 86401 })
    refuses("account:sftp: option 'timeout'", acct.sftp, acct, { timeout = { 5 } })
    refuses("account:sftp: option 'timeout'", acct.sftp, acct, { timeout = 0 / 0 })
    local ok = assert(acct:sftp { timeout = 86400 })                -- a day is still fine
    ok:close()
  end)

  it("the sftp block: timeout and chunk_size", function()
    refuses("sftp.timeout", integration, { timeout = 86401 })
    refuses("sftp.timeout", integration, { timeout = -5 })
    refuses("sftp.timeout", integration, { timeout = "30" })
    refuses("sftp.chunk_size", integration, { chunk_size = "1MB" })
    refuses("sftp.legacy_algorithms", integration, { legacy_algorithms = "yes" })
    refuses("sftp.port", integration, { port = { 22 } })
  end)

  it("get and put: names, types, paths", function()
    local src = work .. "/small.txt"
    helpers.write_file(src, "small")
    local dst = info.dir .. "/opts-small.txt"
    refuses("sftp:get: unknown option 'resum'", s.get, s, dst, src, { resum = true })
    refuses("sftp:put: unknown option 'resum'", s.put, s, src, dst, { resum = true })
    refuses("sftp:put: option 'resume' must be true or false", s.put, s, src, dst, { resume = "yes" })
    refuses("sftp:put: option 'chunk_size' must be an integer", s.put, s, src, dst, { chunk_size = "1MB" })
    refuses("sftp:put: option 'chunk_size'", s.put, s, src, dst, { chunk_size = 100 })
    refuses("sftp:put: option 'chunk_size'", s.put, s, src, dst, { chunk_size = 4096.5 })
    refuses("sftp:get: option 'progress' must be a function", s.get, s, dst, src, { progress = "print" })
    refuses("sftp:get: options must be a table", s.get, s, dst, src, "resume")
    refuses("sftp:put: the source path must be a string", s.put, s, nil, dst)
    refuses("sftp:get: the target path must be a string", s.get, s, dst, { src })
    -- nothing reached the server
    assert.is_nil(helpers.read_file(dst))
    assert.equals(5, s:put(src, dst, { resume = false, chunk_size = 4096 }))
    assert.equals("small", helpers.read_file(dst))
  end)

  it("mkdir, rename, open and the path operations", function()
    local d = info.dir .. "/opts-dir"
    refuses("sftp:mkdir: unknown option 'parent'", s.mkdir, s, d, { parent = true })
    refuses("sftp:mkdir: option 'parents' must be true or false", s.mkdir, s, d, { parents = 1 })
    refuses("sftp:mkdir: option 'mode' must be an integer", s.mkdir, s, d, { mode = "0755" })
    refuses("sftp:mkdir: option 'mode'", s.mkdir, s, d, { mode = 99999 })
    assert.is_nil(s:stat(d))                                        -- nothing was made
    assert.is_true(s:mkdir(d, { mode = 448.0 }))                    -- 0700, a whole float is fine
    assert.equals(448, s:stat(d).mode % 4096)
    refuses("sftp:rename: unknown option 'overwrites'", s.rename, s, d, d .. "2", { overwrites = true })
    refuses("sftp:rename: option 'overwrite' must be true or false", s.rename, s, d, d .. "2", { overwrite = "yes" })
    refuses("sftp:rename: to must be a string", s.rename, s, d, nil)
    refuses("sftp:open: mode must be a string", s.open, s, d .. "/f", 1)
    refuses("sftp:open: bad mode 'rw'", s.open, s, d .. "/f", "rw")
    for _, op in ipairs({ "stat", "lstat", "remove", "rmdir", "dir", "list", "open" }) do
      refuses("sftp:" .. op .. ": path must be a string", s[op], s, { d })
    end
    refuses("sftp:realpath: path must be a string", s.realpath, s, 5)
    refuses("sftp:set_timeout: seconds must be a number of seconds", s.set_timeout, s, "5")
    refuses("sftp:set_timeout: seconds", s.set_timeout, s, 2 * 86400)
    assert.is_true(s:rmdir(d))
  end)

  it("file methods: read counts, seek arguments", function()
    local path = info.dir .. "/opts-file.txt"
    helpers.write_file(path, "0123456789")
    local f = assert(s:open(path, "r"))
    refuses("byte count must be a whole number", f.read, f, 2.5)
    refuses("byte count must be a whole number", f.read, f, -1)
    refuses("invalid format", f.read, f, {})
    refuses("bad argument #2 to 'seek'", f.seek, f, "set", "3")
    refuses("bad argument #2 to 'seek'", f.seek, f, "set", 1.5)
    refuses("bad argument #1 to 'seek'", f.seek, f, 3)
    assert.equals(4, f:seek("set", 4.0))
    assert.is_true(math.type == nil or math.type(f:seek("cur")) == "integer")
    assert.equals("45", f:read(2.0))
    f:close()
  end)
end)

describe("sftp credentials", function()
  local function creds_error(creds)
    local integ = integration()
    local ok, err = pcall(integ.account, integ, { credentials = creds })
    assert.is_false(ok, "account accepted the credentials")
    return tostring(err)
  end

  it("refuses empty credentials when the account is made", function()
    assert.matches("credentials.password must not be empty",
      creds_error { username = "u", password = "" }, 1, true)
    assert.matches("credentials.private_key must not be empty",
      creds_error { username = "u", private_key = "" }, 1, true)
    assert.matches("credentials.private_key_data must not be empty",
      creds_error { username = "u", private_key_data = "" }, 1, true)
    assert.matches("credentials.passphrase must not be empty",
      creds_error { username = "u", private_key = "/k", passphrase = "" }, 1, true)
    assert.matches("credentials.username",
      creds_error { username = "", password = "pw" }, 1, true)
    assert.matches("credentials.password must be a string",
      creds_error { username = "u", password = 1234 }, 1, true)
  end)
end)

describe("sftp numbers from JSON", function()
  local function kh_with(port)
    local kh = work .. "/kh_" .. port .. "_" .. n
    helpers.write_file(kh, "[127.0.0.1]:" .. port .. " " .. info.host_keys["ssh-ed25519"].pub .. "\n")
    return kh
  end

  local function json_definition(fields)
    local path = work .. "/def" .. n .. ".json"
    n = n + 1
    helpers.write_file(path, ([[{
  "name": "JSON SFTP %d", "key": "jsonsftp%d", "auth": "sftp",
  "sftp": { "host": "127.0.0.1", "port": %d, "known_hosts": "%s", "timeout": 10, "chunk_size": 65536 }
}]]):format(n, n, fields.port, fields.known_hosts))
    return path
  end

  it("connects with a port read from a JSON file and known_hosts [127.0.0.1]:PORT", function()
    assert.is_not.equals(22, info.port)
    local integ = connkit.load(json_definition { port = info.port, known_hosts = kh_with(info.port) })
    local acct = integ:account { credentials = { username = info.user, private_key = info.keys.ed25519.path } }
    local s, err = acct:sftp()
    assert(s, err and err.message)
    -- the session works, and chunk_size (65536.0 from JSON) drives transfers
    local src = work .. "/json.bin"
    helpers.write_file(src, ("j"):rep(200000))
    assert.equals(200000, s:put(src, info.dir .. "/json.bin"))
    assert.equals(("j"):rep(200000), helpers.read_file(info.dir .. "/json.bin"))
    assert.matches(":" .. info.port .. " ", tostring(s), 1, true)
    s:close()
  end)

  it("reports an unknown host from a JSON definition as host_key_unknown, not a Lua error", function()
    local kh = work .. "/kh_other_json"
    helpers.write_file(kh, "[127.0.0.1]:1 " .. info.host_keys["ssh-ed25519"].pub .. "\n")
    local integ = connkit.load(json_definition { port = info.port, known_hosts = kh })
    local acct = integ:account { credentials = { username = info.user, private_key = info.keys.ed25519.path } }
    local ok, s, err = pcall(acct.sftp, acct)
    assert.is_true(ok, "raised: " .. tostring(s))
    assert.is_nil(s)
    assert.equals("host_key_unknown", err.code)
    assert.matches("[127.0.0.1]:" .. info.port .. " is not in", err.message, 1, true)
    assert.matches("ssh-keyscan -t ed25519 -p " .. info.port .. " 127.0.0.1", err.message, 1, true)
    assert.not_matches(info.port .. ".0", err.message, 1, true)
  end)

  it("treats a float port written in Lua (37535.0) as the integer", function()
    local s, err = account({ port = info.port + 0.0, host_key = false, known_hosts = kh_with(info.port) }):sftp()
    assert(s, err and err.message)
    s:close()
    local kh = work .. "/kh_float_other"
    helpers.write_file(kh, "otherhost " .. info.host_keys["ssh-ed25519"].pub .. "\n")
    local acct = account({ port = info.port + 0.0, host_key = false, known_hosts = kh })
    local ok
    ok, s, err = pcall(acct.sftp, acct)
    assert.is_true(ok, "raised: " .. tostring(s))
    assert.equals("host_key_unknown", err.code)
    assert.matches("-p " .. info.port .. " 127.0.0.1", err.message, 1, true)
  end)
end)
