--- A small JSON path: dotted names and [n] indexes ("error.code",
-- "data.items[0].id", "[0]") into a decoded JSON document. Indexes count
-- from 0, as in JSON (and JavaScript). A path is compiled once, at
-- definition time; compile raises on bad syntax.
-- @module connkit.jsonpath
local M = {}

local Path = {}
Path.__index = Path
Path.__name = "connkit.jsonpath"

function Path:__tostring() return self.source end

--- Compiles a path; raises (message naming the problem and the path) when
-- it does not parse.
-- @tparam string str the path
-- @return a compiled path (for M.get)
function M.compile(str)
  if type(str) ~= "string" then error("JSON path must be a string, not a " .. type(str), 2) end
  if str == "" then error("JSON path must not be empty", 2) end
  local steps, pos, n = {}, 1, #str
  while pos <= n do
    local name, nxt = str:match("^([%w_%-$@]+)()", pos)
    if name then
      steps[#steps + 1] = name
      pos = nxt
    else
      local idx, after = str:match("^%[(%d+)%]()", pos)
      if not idx then
        error(("JSON path %q: unexpected %q at position %d (use names and [n] indexes: a.b[0].c)")
          :format(str, str:sub(pos, pos), pos), 2)
      end
      steps[#steps + 1] = tonumber(idx) + 1
      pos = after
    end
    if pos <= n then
      local c = str:sub(pos, pos)
      if c == "." then
        pos = pos + 1
        if pos > n or str:sub(pos, pos) == "." or str:sub(pos, pos) == "[" then
          error(("JSON path %q: a name must follow '.' at position %d"):format(str, pos - 1), 2)
        end
      elseif c ~= "[" then
        error(("JSON path %q: unexpected %q at position %d"):format(str, c, pos), 2)
      end
    end
  end
  return setmetatable({ source = str, steps = steps }, Path)
end

--- The value at `path` (a compiled path or a string) in `doc`, or nil when
-- any step is missing or lands on something that is not a table.
function M.get(doc, path)
  if type(path) == "string" then path = M.compile(path) end
  local v = doc
  for _, step in ipairs(path.steps) do
    if type(v) ~= "table" then return nil end
    v = v[step]
  end
  return v
end

return M
