-- known_hosts matching (core.known_hosts) against OpenSSH's own decision:
-- `ssh-keygen -F name -f file` says which lines name a host, so every
-- pattern case here is checked against OpenSSH rather than against what we
-- think it does. Plus the time a hostile line costs (linear, not
-- exponential in the number of `*`).
local helpers = require "helpers"
local core = require "connkit.core"
local q = helpers.shell_quote

local KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C7okWi0dh2l4GdDK"

local work, n = nil, 0

setup(function() work = helpers.tmpdir("known-hosts") end)
teardown(function() if work then helpers.execute("rm -rf " .. q(work)) end end)

-- A new file in the work directory holding text; returns its path.
local function written(text)
  n = n + 1
  local path = work .. "/kh" .. n
  helpers.write_file(path, text)
  return path
end

-- A known_hosts file holding `hosts KEY`; hashed with ssh-keygen -H when asked.
local function file_with(hosts, hashed)
  local path = written(hosts .. " " .. KEY .. "\n")
  if hashed then
    local ok, out = helpers.run("ssh-keygen -q -H -f " .. q(path) .. " && rm -f " .. q(path .. ".old"))
    assert(ok, out)
  end
  return path
end

local function ours(path, name)
  local entries = assert(core.known_hosts(path, name))
  return #entries > 0
end

local function openssh(path, name)
  local _, out = helpers.run("ssh-keygen -F " .. q(name) .. " -f " .. q(path))
  return out:find("ssh-ed25519", 1, true) ~= nil
end

describe("known_hosts patterns", function()
  local NAMES = { "host", "HOST", "hoSt", "hst", "hoost", "a.example.com", "bad.example.com",
    "example.com", "x.y.example.com", "[127.0.0.5]:2222", "[127.0.0.5]:22", "127.0.0.5",
    "[127.0.0.1]:2222", "10.0.0.1", "" }
  local LINES = {
    "host", "HOST", "h?st", "h*st", "*", "?", "*.example.com", "*.example.com,!bad.example.com",
    "!bad.example.com,*.example.com", "!host", "host,,other", "*e*a*m*p*l*e*.*c*o*m",
    "[127.0.0.*]:2222", "[127.0.0.?]:2222", "[127.0.0.5]:2222,127.0.0.5", "10.0.0.?,!10.0.0.1",
    "x.*.example.com", "**", "*?*", "h*o*s*t*",
  }
  for _, line in ipairs(LINES) do
    it("decides as OpenSSH for " .. line, function()
      local path = file_with(line)
      for _, name in ipairs(NAMES) do
        if name ~= "" then
          assert.equals(openssh(path, name), ours(path, name), ("line %q, host %q"):format(line, name))
        end
      end
    end)
  end

  it("matches hashed entries (|1|salt|hash) for host and [host]:port, as OpenSSH", function()
    for _, host in ipairs({ "files.example.com", "[files.example.com]:2222", "127.0.0.1" }) do
      local path = file_with(host, true)
      assert.matches("^|1|", helpers.read_file(path))
      for _, name in ipairs({ "files.example.com", "[files.example.com]:2222", "127.0.0.1",
        "[127.0.0.1]:2222", "other.example.com" }) do
        assert.equals(openssh(path, name), ours(path, name), ("hashed %q, host %q"):format(host, name))
        assert.equals(name == host, ours(path, name), ("hashed %q, host %q"):format(host, name))
      end
    end
  end)

  -- (libssh2 1.10 reads all three as the original entry: it skips
  -- characters outside base64's alphabet and takes a missing padding)
  it("refuses, as OpenSSH, a hashed entry whose salt or hash is not canonical base64", function()
    local host = "files.example.com"
    local hashed = helpers.read_file(file_with(host, true))
    local salt, hash, rest = hashed:match("^|1|([^|]+)|(%S+)(.*)$")
    assert.truthy(salt and salt:find("=$"))
    local variants = {
      ["a stray character in the salt"] = "|1|" .. salt:sub(1, 10) .. "." .. salt:sub(11) .. "|" .. hash,
      ["the salt without its padding"] = "|1|" .. salt:gsub("=+$", "") .. "|" .. hash,
      ["a bar after the hash"] = "|1|" .. salt .. "|" .. hash .. "|",
    }
    for what, hosts in pairs(variants) do
      local path = written(hosts .. rest)
      assert.is_false(openssh(path, host), what)
      assert.is_false(ours(path, host), what)
    end
    local path = written("|1|" .. salt .. "|" .. hash .. rest)
    assert.is_true(ours(path, host))
  end)

  it("returns the marker of @revoked and @cert-authority lines", function()
    local path = written("@revoked host " .. KEY .. "\n@cert-authority *.example.com " .. KEY .. "\n")
    assert.equals("revoked", core.known_hosts(path, "host")[1].marker)
    assert.equals("cert-authority", core.known_hosts(path, "a.example.com")[1].marker)
  end)
end)

describe("known_hosts matching time", function()
  -- The longest host name core.known_hosts considers, and lines as long as
  -- it reads: a recursive matcher needs ~(name length)^(stars) steps here.
  local name = ("a"):rep(1000) .. ".example.org"

  local function time_lines(lines)
    local path = written(table.concat(lines, "\n") .. "\n")
    local t0 = os.clock()
    local entries = assert(core.known_hosts(path, name))
    return os.clock() - t0, #entries
  end

  it("takes well under a second for 12 `*` and a 30-character name (exponential: seconds)", function()
    local path = written(("*a"):rep(12) .. "*b " .. KEY .. "\n")
    local t0 = os.clock()
    assert.equals(0, #assert(core.known_hosts(path, ("a"):rep(30))))
    local took = os.clock() - t0
    assert.is_true(took < 0.1, ("took %.3f s of CPU"):format(took))
  end)

  it("takes well under a second for a line with many `*` and a long non-matching name", function()
    local took, found = time_lines({ ("*a"):rep(12) .. "*b " .. KEY })
    assert.equals(0, found)
    assert.is_true(took < 0.1, ("took %.3f s of CPU"):format(took))
  end)

  it("takes well under a second for a file of longest lines full of `*`", function()
    local lines = {}
    for i = 1, 20 do
      lines[i] = ("*a"):rep(8000 - 8 * i) .. "*b " .. KEY -- under the 16 KiB line limit
    end
    local took, found = time_lines(lines)
    assert.equals(0, found)
    assert.is_true(took < 0.5, ("took %.3f s of CPU"):format(took))
  end)

  it("still matches such a pattern when the name fits", function()
    local _, found = time_lines({ ("*a"):rep(12) .. "*.example.org " .. KEY })
    assert.equals(1, found)
  end)
end)
