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
    for _, m in ipairs({ "connkit", "connkit.account", "connkit.store.file", "connkit.sftp", "connkit.cli",
      "connkit.account_tokens", "connkit.integration", "connkit.errors", "connkit.store", "connkit.jsonpath", "connkit.http.request",
      "connkit.http.response", "connkit.http.async", "connkit.auth.oauth2", "connkit.auth.login",
      "connkit.auth.jwt", "connkit.auth.jwk" }) do
      assert.matches(">" .. m:gsub("%p", "%%%0") .. "<", index)
    end
    -- the public API's pages carry its functions with their parameters
    -- (some have no code of their own to hang a comment on: the request
    -- shortcuts are made in a loop, connkit.all is async.all)
    local pages = {
      connkit = { "Account:get", "Account:post", "Account:head", "Account:request", "Account:prepare",
        "all", "poll", "pollfd", "timeout", "use_transport", "Parameters:", "Returns:" },
      ["connkit.account"] = { "Account:fill", "Account:verify", "Account:pages", "Account:sftp" },
      ["connkit.account_tokens"] = { "Account:token", "Account:refresh", "Account:status", "Account:exchange" },
      ["connkit.auth.oauth2"] = { "Account:authorize_url", "Account:finish_authorization", "Account:revoke" },
      ["connkit.errors"] = { "Error", "code" },
    }
    for m, names in pairs(pages) do
      local page = assert(helpers.read_file(dir .. "/html/modules/" .. m .. ".html"), m)
      for _, name in ipairs(names) do assert.matches(name, page, 1, true) end
    end
    -- internal helpers marked @local stay out of the public pages
    local account = helpers.read_file(dir .. "/html/modules/connkit.account.html")
    assert.is_nil(account:find("_set_token", 1, true))
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

  -- tools/doc-coverage.lua: LDoc leaves a function without a doc comment
  -- out of the reference silently; the tool names it
  it("names the public functions without an LDoc comment, and with --tags the parameters and returns left out", function()
    local file = dir .. "/cover.lua"
    helpers.write_file(file, table.concat({
      "--- A module.", "-- @module cover", "local M = {}", "local checks = {}",
      "function checks.private() end",           -- a table that stays in the file
      "-- a plain comment", "function M.bare(a) return a end",
      "--- Adds.", "-- @tparam number a the first", "function M.add(a, b)", "  return a + b", "end",
      "--- Internal.", "-- @local", "function M.hidden() end",
      "function M._under() end",
      "--- Done right.", "-- @tparam number a the value", "-- @treturn number a", "function M.good(a) return a end",
      "return M", "" }, "\n"))
    local tool = q(helpers.root .. "/tools/doc-coverage.lua")
    local ok, out = helpers.run(helpers.lua .. " " .. tool .. " " .. q(file))
    assert.is_false(ok)
    assert.matches("cover.lua:7: M.bare: no LDoc comment", out, 1, true)
    assert.matches("doc-coverage: 1 function to document", out, 1, true)
    ok, out = helpers.run(helpers.lua .. " " .. tool .. " --tags " .. q(file))
    assert.is_false(ok)
    assert.matches("cover.lua:10: M.add: @param b, @return", out, 1, true)
    for _, name in ipairs({ "private", "hidden", "_under", "good" }) do
      assert.is_nil(out:find(name, 1, true), name)
    end
    assert.matches("doc-coverage: 2 functions to document", out, 1, true)
  end)
end)
