-- tools/deps.sh names every Debian package whose programs and modules the
-- build, the specs and the demo use. It installs without Recommends, so a
-- package that only comes as another's Recommends (gunicorn, for httpbin)
-- must be named itself. `make test-fresh` proves the whole list on a bare
-- root; this checks, on any Debian machine, that each file below belongs
-- to a named package or to a direct dependency of one.
local helpers = require "helpers"
local q = helpers.shell_quote

-- What the suite runs (spec/peers/, spec/helpers.lua, the specs, the
-- Makefile): programs, then Python and Lua modules.
local PROGRAMS = {
  "gcc", "make", "pkg-config", "busted", "curl", "openssl", "pgrep", "ssh-keygen", "sftp",
  "/usr/sbin/sshd", "/usr/sbin/nginx", "/usr/bin/python3", "node", "npm", "redis-server", "redis-cli",
  "script", "ldoc", "lua5.1", -- the connkit command's pseudo-terminal specs; make docs (LDoc runs on 5.1)
}
local PYTHON_MODULES = { "httpbin", "gunicorn" } -- spec/peers/httpbin.lua: python3 -m gunicorn httpbin:app
local LUA_MODULES = { "socket", "lfs", "cjson", "busted", "argparse" }
-- spec/peers/openresty.lua: nginx's Lua module, the kit it loads first, the
-- Lua library the module requires at start, the LuaJIT headers that
-- build/luajit (the module nginx loads) is compiled with, and resty.redis
-- (Debian's module name nginx.redis) of the Redis store inside nginx
local FILES = {
  "/usr/lib/nginx/modules/ngx_http_lua_module.so", "/usr/lib/nginx/modules/ndk_http_module.so",
  "/usr/share/lua/5.1/resty/core.lua", "/usr/include/luajit-2.1/luajit.h",
  "/usr/share/lua/5.1/nginx/redis.lua",
}

local function sh(cmd)
  local ok, out = helpers.run(cmd)
  assert(ok, cmd .. "\n" .. out)
  return out
end

-- The packages tools/deps.sh installs for a target.
local function listed(target)
  local t = {}
  for p in sh("LUA=" .. q(helpers.lua) .. " sh " .. q(helpers.root .. "/tools/deps.sh") .. " --print " .. target)
      :gmatch("%S+") do t[p] = true end
  return t
end

-- The listed packages and their direct dependencies (first alternative of
-- each, architecture qualifiers dropped), as dpkg knows them here.
local function with_depends(pkgs)
  local all = {}
  for p in pairs(pkgs) do
    all[p] = true
    local ok, deps = helpers.run("dpkg-query -W -f='${Depends},${Pre-Depends}' " .. q(p) .. " 2>/dev/null")
    if ok then
      for dep in deps:gmatch("[^,]+") do
        local name = dep:match("^%s*([%w.+-]+)")
        if name then all[name] = true end
      end
    end
  end
  return all
end

-- The package that owns a file (dpkg -S), or nil.
local function owner(path)
  local ok, out = helpers.run("dpkg -S " .. q(path) .. " 2>/dev/null")
  if not ok then return nil end
  return (out:match("^([%w.+-]+)[:,]"))
end

-- package.searchpath, which Lua 5.1 lacks.
local function searchpath(name, path)
  for template in path:gmatch("[^;]+") do
    local file = template:gsub("%?", (name:gsub("%.", "/")))
    if helpers.read_file(file) then return file end
  end
end

-- The file behind each program and module the suite uses.
local function files_used()
  local files = {}
  for _, prog in ipairs(PROGRAMS) do
    local path = prog:sub(1, 1) == "/" and prog or sh("command -v " .. q(prog)):match("%S+")
    files[#files + 1] = { what = "program " .. prog, path = path }
  end
  for _, m in ipairs(PYTHON_MODULES) do
    local path = sh("/usr/bin/python3 -c " .. q("import " .. m .. "; print(" .. m .. ".__file__)")):match("%S+")
    files[#files + 1] = { what = "python module " .. m, path = path }
  end
  for _, m in ipairs(LUA_MODULES) do
    local path = searchpath(m, package.path) or searchpath(m, package.cpath)
    files[#files + 1] = { what = "lua module " .. m, path = path }
  end
  for _, path in ipairs(FILES) do
    files[#files + 1] = { what = "file", path = helpers.read_file(path) and path or nil }
  end
  return files
end

describe("tools/deps.sh", function()
  local dpkg = helpers.execute("command -v dpkg-query >/dev/null")

  it("names the package of every program and module the specs and the demo use", function()
    if not dpkg then pending("not a Debian system") return end
    local known = with_depends(listed("test"))
    local missing = {}
    for _, f in ipairs(files_used()) do
      assert.is_string(f.path, f.what .. " not found")
      local pkg = owner(f.path)
      -- a file no package owns (node from another packaging) is not Debian's to list
      if pkg and not known[pkg] then
        missing[#missing + 1] = ("%s (%s) is in %s"):format(f.what, f.path, pkg)
      end
    end
    assert.are.same({}, missing)
  end)

  it("names gunicorn itself: python3-httpbin only recommends it", function()
    local test = listed("test")
    assert.is_true(test["python3-gunicorn"])
    if not dpkg then return end
    -- the reason it must be listed: no Depends brings it
    local deps = with_depends({ ["python3-httpbin"] = true })
    assert.is_nil(deps["python3-gunicorn"])
  end)

  it("installs luarocks for make rock and valgrind for make bench only", function()
    assert.is_true(listed("rock").luarocks)
    assert.is_true(listed("bench").valgrind)
    assert.is_nil(listed("test").valgrind)
    assert.is_nil(listed("rock").nginx)
  end)

  it("installs nginx's Lua module and the OpenResty LuaJIT branch it is built on, for any LUA", function()
    for _, lua in ipairs({ "lua5.4", "luajit" }) do
      local out = sh("LUA=" .. lua .. " sh " .. q(helpers.root .. "/tools/deps.sh") .. " --print test")
      local test = {}
      for p in out:gmatch("%S+") do
        assert.is_nil(test[p], lua .. ": " .. p .. " listed twice")
        test[p] = true
      end
      for _, p in ipairs({ "libnginx-mod-http-lua", "libnginx-mod-http-ndk", "lua-resty-core",
                           "luajit2", "libluajit2-5.1-dev" }) do
        assert.is_true(test[p], lua .. ": " .. p)
      end
      -- Debian's plain LuaJIT conflicts with them: installing it would remove the module
      assert.is_nil(test.luajit, lua)
      assert.is_nil(test["libluajit-5.1-dev"], lua)
    end
    assert.is_nil(listed("rock")["libnginx-mod-http-lua"])
  end)

  it("leaves LuaJIT the OpenResty branch once nginx's Lua module is installed", function()
    if not dpkg then pending("not a Debian system") return end
    if not owner("/usr/lib/nginx/modules/ngx_http_lua_module.so") then
      pending("libnginx-mod-http-lua is not installed (sh tools/deps.sh, as root)")
      return
    end
    assert.are.equal("luajit2", owner("/usr/bin/luajit"))
    assert.are.equal("libluajit2-5.1-dev", owner("/usr/include/luajit-2.1/luajit.h"))
    if helpers.lua == "luajit" then
      -- the specs themselves run on that branch (its own extension modules)
      assert.is_true(pcall(require, "table.isempty"))
    end
  end)

  it("installs argparse (the connkit command) for every Lua connkit supports, the rock's build too", function()
    assert.is_true(listed("rock")["lua-argparse"])
    if not dpkg then return end
    if not owner("/usr/share/lua/5.4/argparse.lua") then pending("lua-argparse is not installed") return end
    -- LuaJIT reads the 5.1 directory
    for _, v in ipairs({ "5.1", "5.3", "5.4" }) do
      assert.are.equal("lua-argparse", owner("/usr/share/lua/" .. v .. "/argparse.lua"), v)
    end
  end)

  it("installs clang and its libFuzzer runtime for make fuzz only", function()
    assert.is_true(listed("fuzz").clang)
    assert.is_true(listed("fuzz")["libclang-rt-14-dev"])
    assert.is_true(listed("fuzz")["libssh2-1-dev"])
    assert.is_nil(listed("test").clang)
  end)
end)
