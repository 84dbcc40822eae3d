-- The README's "A two-minute session" of the connkit command, replayed as
-- written against the suite's peers: the block is taken from README.md,
-- its example addresses replaced by the peers' (oidc-provider for the
-- login, sshd for the upload), `connkit` made a function that runs
-- bin/connkit, and the whole block run by sh with `set -e`. Also: the
-- README's exit-status table says what lua/connkit/cli/status_codes.lua does.
local helpers = require "helpers"
local cli = require "support.cli"
local codes = require "connkit.cli.status_codes"
local q = helpers.shell_quote

local readme = assert(helpers.read_file(helpers.root .. "/README.md"))
local section = readme:match("\n## The connkit command\n(.-)\n## ")

-- `s` with `from` replaced by `to` (plain text), which must occur
local function replace(s, from, to)
  local i = s:find(from, 1, true)
  assert(i, "the README's session has no " .. from)
  local out = s:gsub(from:gsub("%p", "%%%0"), (to:gsub("%%", "%%%%")))
  return out
end

describe("README: the connkit command", function()
  it("has a two-minute session that works as written", function()
    assert.is_string(section, "README has no \"The connkit command\" section")
    local block = section:match("### A two%-minute session\n\n```sh\n(.-)\n```")
    assert.is_string(block)
    for _, step in ipairs({ "connkit login", "connkit token", "connkit request", "connkit sftp .- put " }) do
      assert.matches(step, block)
    end
    local op, sshd = helpers.peer("oidc"), helpers.peer("sshd")
    local t = cli.new("cli-readme")
    local browser = t:file("browser.sh", 'jar=$(mktemp)\ncurl -sS -g -L --max-redirs 15 --max-time 30 -c "$jar"'
      .. ' -b "$jar" -o /dev/null "$1"\nrm -f "$jar"\n')
    helpers.write_file(t.dir .. "/report.csv", "id,total\n1,42\n")
    local remote = sshd.dir .. "/readme-report.csv"
    local s = block
    s = replace(s, "https://idp.example.com", op.issuer)
    s = replace(s, "my-cli-app", op.clients.public.id)
    s = replace(s, "--param host=files.example.com", "--param host=127.0.0.1 --param port=" .. sshd.port)
    s = replace(s, "SHA256:pFhyJ7Zf3PEKmHoNwL1xW1Z6mGk5o0h3gHxX3zZz1nA", sshd.host_keys["ssh-ed25519"].fingerprint)
    s = replace(s, "username=me", "username=" .. sshd.user)
    s = replace(s, '"$HOME/.ssh/id_ed25519"', q(sshd.keys.ed25519.path))
    s = replace(s, "/upload/report.csv", remote)
    local script = "set -e\nconnkit() { " .. t:command('"$@"', { BROWSER = helpers.clean_env .. "sh " .. browser }) .. "; }\n"
      .. "cp " .. q(helpers.root .. "/examples/cli/idp.json") .. " " .. q(helpers.root .. "/examples/cli/files.json")
      .. " .\nmkdir -p examples/cli && mv idp.json files.json examples/cli/\n" .. s .. "\necho __done\n"
    helpers.write_file(t.dir .. "/session.sh", script)
    local ok, out = helpers.run("cd " .. q(t.dir) .. " && sh session.sh")
    assert.is_true(ok, out)
    assert.matches("__done", out)
    assert.matches('"sub"', out)                          -- curl with the token, and connkit request
    assert.matches("authorized: true", out, 1, true)      -- status
    assert.equal("id,total\n1,42\n", helpers.read_file(remote)) -- the upload, on the server
    t:cleanup()
  end)

  it("documents every exit status the command uses", function()
    local tbl = section:match("### Exit status\n(.-)\n\n")
    assert.is_string(tbl)
    local rows = {}
    for line in tbl:gmatch("[^\n]+") do
      local nums, text = line:match("^| ([%d, ]+) | (.*)|$")
      if nums then rows[#rows + 1] = { nums = nums, text = text } end
    end
    local missing = {}
    for code, status in pairs(codes.BY_CODE) do
      local found = false
      for _, r in ipairs(rows) do
        if (" " .. r.nums .. ","):find("[ ,]" .. status .. ",") and r.text:find("`" .. code .. "`", 1, true) then
          found = true
        end
      end
      if not found then missing[#missing + 1] = code .. " -> " .. status end
    end
    table.sort(missing)
    assert.same({}, missing)
  end)
end)
