-- `make docs` (tools/docs.sh, LDoc with config.ld): the reference of the
-- Lua modules builds with no LDoc warning, and a warning fails it.
local helpers = require "helpers"
local q = helpers.shell_quote

local function docs(env)
  return helpers.run(env .. " sh " .. q(helpers.root .. "/tools/docs.sh"))
end

describe("make docs", function()
  local dir
  setup(function() dir = helpers.tmpdir("docs") end)
  teardown(function() if dir then helpers.execute("rm -rf " .. q(dir)) end end)

  it("writes the reference of every module with no LDoc warning", function()
    local ok, out = docs("DOCS_DIR=" .. q(dir .. "/html"))
    assert.is_true(ok, out)
    assert.matches("^docs: written to ", out)
    local index = helpers.read_file(dir .. "/html/index.html")
    assert.is_string(index)
    for _, m in ipairs({ "connkit", "connkit.account", "connkit.store.file", "connkit.sftp", "connkit.cli" }) do
      assert.matches(">" .. m:gsub("%p", "%%%0") .. "<", index)
    end
  end)

  it("fails on a warning, and shows it", function()
    local tree = dir .. "/tree"
    assert(helpers.run("mkdir -p " .. q(tree .. "/lua/connkit") .. " && cp " .. q(helpers.root .. "/config.ld")
      .. " " .. q(tree)))
    helpers.write_file(tree .. "/lua/connkit/init.lua", "--- A module.\n-- @module connkit\nlocal M = {}\n"
      .. "--- Adds.\n-- @tparam number a\nfunction M.add(b) return b end\nreturn M\n")
    local ok, out = docs("DOCS_ROOT=" .. q(tree) .. " DOCS_DIR=" .. q(dir .. "/bad"))
    assert.is_false(ok)
    assert.matches("param and formal argument name mismatch", out, 1, true)
    assert.matches("docs: LDoc reported the problems above", out, 1, true)
  end)
end)
