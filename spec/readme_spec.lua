-- The README is self-contained and its "Use it from your own script" recipes
-- work: every relative link of the project's Markdown files points at a file
-- inside the repository, and a script run each way the README shows reaches
-- httpbin through connkit.
local helpers = require "helpers"
local q = helpers.shell_quote

local root = helpers.root
local readme = assert(helpers.read_file(root .. "/README.md"), "README.md not found")

-- The project's own Markdown files (not node_modules, builds or caches).
local function markdown_files()
  local ok, out = helpers.run("cd " .. q(root) .. " && find . -name '*.md'"
    .. " -not -path './spec/oidc/node_modules/*' -not -path './build/*'"
    .. " -not -path './luarocks/*' -not -path './.cache/*' -not -path './.git/*'")
  assert(ok, out)
  local t = {}
  for f in out:gmatch("[^\n]+") do t[#t + 1] = f:gsub("^%./", "") end
  return t
end

-- Link targets of a Markdown text: [text](target), [ref]: target, <a href>.
local function links(text)
  local t = {}
  for target in text:gmatch("%]%(%s*<?([^%s)>]+)") do t[#t + 1] = target end
  for target in text:gmatch("\n%s*%[[^%]]+%]:%s*<?([^%s>]+)") do t[#t + 1] = target end
  for target in text:gmatch("[Hh][Rr][Ee][Ff]%s*=%s*[\"']([^\"']+)") do t[#t + 1] = target end
  return t
end

-- A path without "." and ".." segments; nil when it climbs above its start.
local function normalize(path)
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then
      if #parts == 0 then return nil end
      parts[#parts] = nil
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  return table.concat(parts, "/")
end

-- Why a link leaves the repository (or points at nothing), or nil.
local function leaves(file, target)
  if target:match("^%a[%w+.-]*:") and not target:match("^file:") then return nil end -- a web address
  if target:sub(1, 1) == "#" then return nil end                                      -- this page
  if target:match("^file:") or target:sub(1, 1) == "/" then return "an absolute path" end
  local path = target:gsub("#.*$", ""):gsub("%?.*$", "")
  local dir = file:match("^(.*)/[^/]*$") or ""
  local inside = normalize((dir ~= "" and dir .. "/" or "") .. path)
  if not inside then return "outside the repository" end
  if not helpers.execute("test -e " .. q(root .. "/" .. inside)) then return "not in the repository" end
  return nil
end

describe("README", function()
  it("links only to files inside the repository", function()
    local files = markdown_files()
    assert.truthy(#files >= 2, "README.md and bench/README.md expected")
    local bad = {}
    for _, f in ipairs(files) do
      for _, target in ipairs(links(helpers.read_file(root .. "/" .. f))) do
        local why = leaves(f, target)
        if why then bad[#bad + 1] = ("%s: %s (%s)"):format(f, target, why) end
      end
    end
    assert.are.same({}, bad)
    -- the check itself: a link to ../shared (what the README had) is caught
    assert.equal("outside the repository", leaves("README.md", "../shared/API.md"))
    assert.equal("not in the repository", leaves("README.md", "docs/missing.md"))
    assert.is_nil(leaves("bench/README.md", "../README.md"))
    assert.is_nil(leaves("README.md", "https://example.test/x"))
  end)

  it("does not send users to files they do not have", function()
    assert.is_nil(readme:find("../shared/", 1, true))
    assert.is_nil(readme:find("API.md", 1, true))
  end)

  describe("Use it from your own script", function()
    local section = readme:match("\n## Use it from your own script\n(.-)\n## ")
    local build = package.cpath:match("(build/[^/;?]+)/%?%.so") or "build/lua5.4"
    local hb, dir, script

    -- runs `cmd` with the ASan runtime when the specs run under make test-asan
    local function run(cmd, env)
      local words = {}
      for k, v in pairs(helpers.child_env(env)) do words[#words + 1] = k .. "=" .. q(v) end
      table.sort(words)
      return helpers.run("cd " .. q(dir) .. " && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_3 -u LUA_CPATH_5_3"
        .. " -u LUA_PATH_5_4 -u LUA_CPATH_5_4 " .. table.concat(words, " ") .. " " .. cmd)
    end
    -- what httpbin received from the script: the X-Recipe header it sent
    local function received(out, recipe)
      assert.matches("status=200", out)
      local seen = out:match("seen=(%S+)")
      assert.equal(recipe, seen, out)
    end

    setup(function()
      assert.is_string(section, "README has no \"Use it from your own script\" section")
      hb = helpers.peer("httpbin")
      dir = helpers.tmpdir("readme")
      script = [[
local connkit = require "connkit"
local api = connkit.integration { name = "Mine", key = "mine", auth = "none", base_url = arg[1] }
local res = assert(api:account {}:get("/anything/readme", { headers = { ["X-Recipe"] = arg[2] } }))
print("status=" .. res.status .. " seen=" .. tostring(res:json().headers["X-Recipe"]))
]]
      helpers.write_file(dir .. "/myscript.lua", script)
    end)
    teardown(function() if dir then helpers.execute("rm -rf " .. q(dir)) end end)

    it("runs a script with tools/run-lua.sh", function()
      assert.matches("sh tools/run-lua.sh myscript.lua", section, 1, true)
      local lua = helpers.lua
      local ok, out = run(("LUA=%s BUILD=%s sh %s myscript.lua %s run-lua"):format(q(lua), q(build),
        q(root .. "/tools/run-lua.sh"), q(hb.url)))
      assert.is_true(ok, out)
      received(out, "run-lua")
    end)

    it("runs a script with the LUA_PATH and LUA_CPATH lines it shows", function()
      local lpath = section:match('LUA_PATH="([^"]+)"')
      local cpath = section:match('LUA_CPATH="([^"]+)"')
      assert.is_string(lpath); assert.is_string(cpath)
      local function fill(s) return (s:gsub("%$CONNKIT", root):gsub("build/lua5%.4", build)) end
      local ok, out = run(("LUA_PATH=%s LUA_CPATH=%s %s myscript.lua %s paths"):format(q(fill(lpath)),
        q(fill(cpath)), q(helpers.lua), q(hb.url)))
      assert.is_true(ok, out)
      received(out, "paths")
      -- and without them the plain interpreter does not find connkit
      local ok2, out2 = run(("%s myscript.lua %s paths"):format(q(helpers.lua), q(hb.url)))
      assert.is_false(ok2)
      assert.matches("module 'connkit' not found", out2, 1, true)
    end)

    it("runs a script with the package.path lines it shows", function()
      local lines = section:match("```lua\n(.-)\n```")
      assert.is_string(lines)
      lines = lines:gsub('"/home/me/src/connkit"', function() return ("%q"):format(root) end)
      lines = lines:gsub("build/lua5%.4", build)
      helpers.write_file(dir .. "/inline.lua", lines .. "\n" .. script:gsub('^local connkit = require "connkit"\n', ""))
      local ok, out = run(("%s inline.lua %s package.path"):format(q(helpers.lua), q(hb.url)))
      assert.is_true(ok, out)
      received(out, "package.path")
    end)
  end)
end)
