-- The rock: `luarocks make --deps-mode none` (tools/rock.sh with
-- ROCK_TREE) into a temporary tree, `luarocks test` with a small spec (the
-- rockspec's test command runs the Debian busted; nothing is downloaded),
-- and the installed `connkit` command: --help and `check` of an example
-- definition, run from outside the checkout with LuaRocks' paths only.
-- Takes about 30 s (the C module is compiled once more).
local helpers = require "helpers"
local q = helpers.shell_quote

local root = helpers.root
local lua = helpers.lua
local version = lua == "luajit" and "5.1" or lua:match("^lua(%d%.%d)$")

describe("the rock", function()
  local tree, home

  setup(function()
    tree = helpers.tmpdir("rock")
    home = helpers.tmpdir("rock-home")
  end)
  teardown(function()
    if tree then helpers.execute("rm -rf " .. q(tree)) end
    if home then helpers.execute("rm -rf " .. q(home)) end
  end)

  it("installs with luarocks make, tests with luarocks test, and its connkit command runs", function()
    if not helpers.execute("command -v luarocks >/dev/null") then
      pending("luarocks is not installed (sh tools/deps.sh rock)")
      return
    end
    local ok, out = helpers.run(("cd %s && LUA=%s ROCK_TREE=%s sh tools/rock.sh"):format(q(root), q(lua), q(tree)))
    assert.is_true(ok, out)
    assert.matches("connkit scm%-1 is now installed in " .. tree:gsub("%p", "%%%0"), out)
    assert.is_true(helpers.execute("test -x " .. q(tree .. "/bin/connkit")))
    assert.is_true(helpers.execute("test -f " .. q(tree .. "/share/lua/" .. version .. "/connkit/cli/init.lua")))

    -- luarocks test: the rockspec's command with one quick spec
    ok, out = helpers.run(("cd %s && LUA=%s luarocks --lua-version %s test rockspec/connkit-scm-1.rockspec"
      .. " -- spec/template_spec.lua"):format(q(root), q(lua), version))
    assert.is_true(ok, out)
    assert.matches("%d+ passed, 0 failed", out)

    -- the installed command, from elsewhere, with LuaRocks' paths only
    local env = ('cd %s && eval "$(luarocks --lua-version %s --tree %s path)" && env -u CONNKIT_ROOT'
      .. ' XDG_DATA_HOME=%s XDG_CONFIG_HOME=%s '):format(q(home), version, q(tree), q(home .. "/data"), q(home .. "/config"))
    ok, out = helpers.run(env .. q(tree .. "/bin/connkit") .. " --help")
    assert.is_true(ok, out)
    assert.matches("^Usage: connkit", out)
    ok, out = helpers.run(env .. q(tree .. "/bin/connkit") .. " check " .. q(root .. "/examples/cli/idp.json"))
    assert.is_true(ok, out)
    assert.matches("idp.json: ok %(Example identity provider, key idp, auth oauth2%)", out)
    -- the rock's modules, not the checkout's
    ok, out = helpers.run(env .. lua .. " -e " .. q('print(package.searchpath and package.searchpath("connkit.cli", package.path)'
      .. ' or "n/a")'))
    assert.is_true(ok, out)
    if version ~= "5.1" then assert.matches(tree:gsub("%p", "%%%0") .. "/share/lua/", out) end
  end)
end)
