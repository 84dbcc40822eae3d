-- Lists the public Lua functions of connkit that have no LDoc comment, for
-- the reference `make docs` builds (LDoc itself says nothing about a
-- function without one: it just leaves it out).
--
--   lua5.4 tools/doc-coverage.lua [--tags] [file.lua ...]   (default: lua/connkit)
--
-- A public function is one defined at the top of a file on a table that
-- leaves the file (the module table, a class whose objects users get):
-- `function M.name(`, `function Class:name(`, `M.name = function(`. Names
-- starting with "_", functions of tables that stay in the file (a local
-- table of checkers, say) and doc comments tagged @local are left out.
-- With --tags, a documented function must also name each parameter
-- (@param or @tparam) and, when it returns a value, say what (@return or
-- @treturn). Prints file:line: name: what is missing; exits 1 when
-- anything is.

local tags = false
local files = {}
for _, a in ipairs(arg) do
  if a == "--tags" then tags = true else files[#files + 1] = a end
end
if #files == 0 then
  local p = io.popen("find lua/connkit -name '*.lua' | sort")
  for line in p:lines() do files[#files + 1] = line end
  p:close()
end

local function lines_of(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  local out = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out, text
end

-- Whether table `name`, declared local in the file, is used as a value
-- (assigned, passed, returned, a metatable): then its functions are public.
local function escapes(text, name)
  if not text:find("local%s+" .. name .. "%s*=") then return true end -- (a global or a parameter)
  local n = name:gsub("%p", "%%%0")
  for _, p in ipairs({ "[=,(]%s*" .. n .. "%s*[,)\n]", "[=,(]%s*" .. n .. "%s*$", "return%s+" .. n .. "%f[^%w_]",
    "{%s*" .. n .. "%s*[,}]" }) do
    if text:find(p) then return true end
  end
  for line in text:gmatch("[^\n]+") do
    if line:find("^%s*[%w_.]+%s*=%s*" .. n .. "%s*$") or line:find("[%w_]+%s*=%s*" .. n .. "%s*[,}]") then
      return true
    end
  end
  return false
end

local function params_of(list)
  local out = {}
  for p in list:gmatch("[^,%s]+") do out[#out + 1] = p end
  return out
end

-- Whether the body starting after line i (a function at column 1) returns
-- a value: a `return x` line before the `end` at column 1.
local function returns_value(lines, i)
  local def = lines[i]
  if def:find("%f[%w]end%s*$") then return def:find("return%s+[^%se]") ~= nil or def:find("return%s+e[^n]") ~= nil end
  for j = i + 1, #lines do
    local l = lines[j]
    if l:find("^end%f[^%w_]") then return false end
    local r = l:match("%f[%w_]return%s+(.*)$")
    if r and r ~= "" and not r:find("^end%f[^%w_]") and not r:find("^error%s*%(") then return true end
  end
  return false
end

local found = 0
for _, path in ipairs(files) do
  local lines, text = lines_of(path)
  local public = {}
  for i, l in ipairs(lines) do
    local obj, name, params = l:match("^function%s+([%w_]+)[.:]([%w_]+)%s*%(([^)]*)%)")
    if not obj then obj, name, params = l:match("^([%w_]+)%.([%w_]+)%s*=%s*function%s*%(([^)]*)%)") end
    if obj and name:sub(1, 1) ~= "_" then
      if public[obj] == nil then public[obj] = escapes(text, obj) end
      if public[obj] then
        local block, j = {}, i - 1
        while j >= 1 and lines[j]:find("^%s*%-%-") do
          table.insert(block, 1, lines[j])
          j = j - 1
        end
        local doc = table.concat(block, "\n")
        local missing = {}
        if doc:find("@local", 1, true) then
          missing = nil
        elseif not (block[1] or ""):find("^%s*%-%-%-") and not doc:find("\n%s*%-%-%-") then
          missing[1] = "no LDoc comment (---)"
        elseif tags then
          for _, p in ipairs(params_of(params)) do
            if p ~= "..." and p ~= "self" then
              local esc = p:gsub("%p", "%%%0")
              if not doc:find("@t?param[^\n]-%s" .. esc .. "%f[^%w_]") then missing[#missing + 1] = "@param " .. p end
            end
          end
          if returns_value(lines, i) and not doc:find("@t?return") then missing[#missing + 1] = "@return" end
        end
        if missing and #missing > 0 then
          found = found + 1
          print(("%s:%d: %s: %s"):format(path, i, obj .. (l:find(":", 1, true) and l:match("^function%s+[%w_]+:") and ":" or ".") .. name,
            table.concat(missing, ", ")))
        end
      end
    end
  end
end
if found > 0 then
  io.stderr:write(("doc-coverage: %d function%s to document\n"):format(found, found == 1 and "" or "s"))
  os.exit(1)
end
