-- SFTP private key errors against a real sshd (spec/peers/sshd.lua): each
-- way a key can be unusable gets its own code and a message that names the
-- file, never the key or the passphrase; no undocumented code reaches the
-- user.
local helpers = require "helpers"
local connkit = require "connkit"
local q = helpers.shell_quote

local info, work
local PASS = "correct horse battery"   -- the passphrase of info.keys.ed25519_pass
local WRONG = "Tr0ub4dor&3-not-it"      -- never to appear in a message

setup(function()
  info = helpers.peer("sshd")
  work = helpers.tmpdir("sftp-keys")
end)

teardown(function()
  if work then helpers.execute("rm -rf " .. q(work)) end
end)

local n = 0
local function integration()
  n = n + 1
  return connkit.integration {
    name = "SFTP key test " .. n, key = "sftpkey" .. n, auth = "sftp",
    sftp = { host = "127.0.0.1", port = info.port, host_key = info.host_keys["ssh-ed25519"].fingerprint, timeout = 10 },
  }
end

local function userauth_count()
  return select(2, (helpers.read_file(info.log) or ""):gsub("userauth%-request for user", ""))
end

-- Connects with the given key credentials; returns the error.
local function key_error(creds)
  creds.username = info.user
  local s, err = integration():account { credentials = creds }:sftp()
  if s then s:close() end
  assert.is_nil(s, "connected with a bad key")
  assert.is_table(err)
  return err
end

-- The message is a plain string naming `path`, without any secret.
local function assert_clean(err, path, secrets)
  assert.is_string(err.message)
  assert.matches(path, err.message, 1, true)
  for _, s in ipairs(secrets or {}) do
    assert.not_matches(s, err.message, 1, true)
    assert.not_matches(s, tostring(err), 1, true)
  end
  for _, k in pairs(info.keys) do                     -- no key text either
    local body = (helpers.read_file(k.path) or ""):match("\n([%w+/=]+)\n")
    if body then assert.not_matches(body, err.message, 1, true) end
  end
end

local function sh(cmd)
  local ok, out = helpers.run(cmd)
  assert(ok, out)
  return out
end

describe("sftp key errors", function()
  it("a missing key file: key_file, before connecting", function()
    local path = work .. "/no such key"
    local before = userauth_count()
    local err = key_error { private_key = path }
    assert.equals("key_file", err.code)
    assert_clean(err, path)
    assert.matches("No such file", err.message, 1, true)
    assert.equals(before, userauth_count())            -- the server saw no login
  end)

  it("a directory given as the key file: key_file", function()
    local err = key_error { private_key = work }
    assert.equals("key_file", err.code)
    assert_clean(err, work)
  end)

  it("a .pub file given as the private key: key_format, naming the private file", function()
    local pub = info.keys.ed25519.path .. ".pub"
    local err = key_error { private_key = pub }
    assert.equals("key_format", err.code)
    assert_clean(err, pub)
    assert.matches("public key", err.message, 1, true)
    assert.matches("give the private key file " .. info.keys.ed25519.path .. " ", err.message, 1, true)
    -- the same in memory
    err = key_error { private_key_data = helpers.read_file(pub) }
    assert.equals("key_format", err.code)
    assert_clean(err, "private_key_data")
    assert.matches("public key", err.message, 1, true)
  end)

  it("a garbage file: key_format", function()
    local path = work .. "/garbage.key"
    helpers.write_file(path, "this is not a key\n")
    local err = key_error { private_key = path }
    assert.equals("key_format", err.code)
    assert_clean(err, path, { "this is not a key" })
    assert.matches("not a private key", err.message, 1, true)
    helpers.write_file(path, "")
    err = key_error { private_key = path }
    assert.equals("key_format", err.code)
    assert.matches("is empty", err.message, 1, true)
  end)

  it("a key encrypted with a cipher libssh2 cannot decrypt: key_format", function()
    local path = work .. "/id_chacha"
    sh(("ssh-keygen -q -t ed25519 -Z chacha20-poly1305@openssh.com -N %s -f %s"):format(q(PASS), q(path)))
    local err = key_error { private_key = path, passphrase = PASS }
    assert.equals("key_format", err.code)
    assert_clean(err, path, { PASS })
    assert.matches("chacha20-poly1305", err.message, 1, true)
  end)

  it("an OpenSSH key that libssh2 cannot parse: key_format from around the libssh2 call", function()
    -- the clear header is intact (it looks like an ed25519 key), the rest is cut
    local path = work .. "/id_cut"
    local text = helpers.read_file(info.keys.ed25519.path)
    local lines = {}
    for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
    helpers.write_file(path, table.concat({ lines[1], lines[2], lines[3], lines[#lines] }, "\n") .. "\n")
    local err = key_error { private_key = path }
    assert.equals("key_format", err.code)
    assert_clean(err, path)
    assert.matches("cannot read", err.message, 1, true)
    assert.matches("ssh-keygen -p -f " .. path, err.message, 1, true)
  end)

  it("a wrong passphrase (OpenSSH format): key_passphrase, passphrase not shown", function()
    local path = info.keys.ed25519_pass.path
    local err = key_error { private_key = path, passphrase = WRONG }
    assert.equals("key_passphrase", err.code)
    assert_clean(err, path, { WRONG, PASS })
    assert.matches("wrong passphrase", err.message, 1, true)
    err = key_error { private_key_data = helpers.read_file(path), passphrase = WRONG }
    assert.equals("key_passphrase", err.code)
    assert_clean(err, "private_key_data", { WRONG, PASS })
  end)

  it("a wrong passphrase (PEM format): key_passphrase, before connecting", function()
    local k = info.keys.ecdsa_pem_pass
    local before = userauth_count()
    local err = key_error { private_key = k.path, passphrase = WRONG }
    assert.equals("key_passphrase", err.code)
    assert_clean(err, k.path, { WRONG, k.pass })
    assert.matches("wrong passphrase", err.message, 1, true)
    assert.equals(before, userauth_count())
  end)

  it("an encrypted key without a passphrase: key_passphrase", function()
    for _, name in ipairs({ "ed25519_pass", "ecdsa_pem_pass" }) do
      local path = info.keys[name].path
      local err = key_error { private_key = path }
      assert.equals("key_passphrase", err.code)
      assert_clean(err, path)
      assert.matches("credentials.passphrase", err.message, 1, true)
    end
  end)

  it("the right passphrase still logs in", function()
    local s = assert(integration():account {
      credentials = { username = info.user, private_key = info.keys.ed25519_pass.path, passphrase = PASS } }:sftp())
    assert.truthy(s:stat(info.dir))
    s:close()
  end)
end)

describe("sftp error codes", function()
  -- every code the SFTP layer returns, as README.md documents it
  local documented = {}
  setup(function()
    local readme = helpers.read_file((os.getenv("CONNKIT_ROOT") or ".") .. "/README.md")
    local section = readme:match("\n### Error codes\n(.-)\n### ")
    assert.is_string(section, "README has no SFTP error code table")
    for row in section:gmatch("\n| ([^|]+) |") do
      for code in row:gmatch("`([%w_]+)`") do documented[code] = true end
    end
  end)

  it("documents every code the C layer and the Lua layer can return", function()
    local root = os.getenv("CONNKIT_ROOT") or "."
    local found = {}
    for _, f in ipairs({ "csrc/sftp.c", "csrc/sftp_fs.c", "csrc/sftp_key.c" }) do
      local text = helpers.read_file(root .. "/" .. f)
      for code in text:gmatch('ck_fail%(L, "([%w_]+)"') do found[code] = f end
      for code in text:gmatch('code = "([%w_]+)"') do found[code] = f end
    end
    local names = helpers.read_file(root .. "/csrc/sftp.c"):match("fx_names%[%] = {(.-)};")
    for code in names:gmatch('"([%w_]+)"') do found[code] = "csrc/sftp.c fx_names" end
    for _, f in ipairs({ "sftp/init.lua", "sftp/login.lua", "sftp/transfer.lua", "sftp/file.lua" }) do
      local text = helpers.read_file(root .. "/lua/connkit/" .. f)
      for code in text:gmatch('errors%.new%("([%w_]+)"') do found[code] = f end
    end
    found.aborted = found.aborted or "sftp_fs.c"
    for code, where in pairs(found) do
      assert.is_true(documented[code] == true, ("code %q (%s) is not in README's SFTP error codes"):format(code, where))
    end
    assert.is_nil(found.ssh)
    assert.is_nil(found.key)
  end)
end)
