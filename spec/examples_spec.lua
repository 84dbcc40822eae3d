-- Every example compiles, the rockspec lists every module, and make demo's
-- script is among them. (The examples talk to real services, so they are
-- compiled here, not run; make demo runs demo.lua end to end.)
local helpers = require "helpers"

local function files(dir, pattern)
  local ok, out = helpers.run("ls " .. helpers.shell_quote(helpers.root .. "/" .. dir))
  assert(ok, out)
  local t = {}
  for name in out:gmatch("[^\n]+") do
    if name:find(pattern) then t[#t + 1] = name end
  end
  return t
end

describe("examples", function()
  it("all compile", function()
    local list = files("examples", "%.lua$")
    assert.is_true(#list >= 7)
    for _, f in ipairs(list) do
      local chunk, err = loadfile(helpers.root .. "/examples/" .. f)
      assert.is_function(chunk, err)
    end
  end)
end)

describe("rockspec", function()
  local text = helpers.read_file(helpers.root .. "/rockspec/connkit-scm-1.rockspec")

  it("builds every C file into connkit.core", function()
    for _, f in ipairs(files("csrc", "%.c$")) do
      assert.matches('"csrc/' .. f:gsub("%p", "%%%0") .. '"', text)
    end
  end)

  it("installs every Lua module", function()
    for _, dir in ipairs({ "lua/connkit", "lua/connkit/store" }) do
      for _, f in ipairs(files(dir, "%.lua$")) do
        assert.matches('"' .. (dir .. "/" .. f):gsub("%p", "%%%0") .. '"', text)
      end
    end
  end)
end)
