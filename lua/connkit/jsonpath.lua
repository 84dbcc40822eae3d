--- JSON paths: where a value sits in a decoded JSON document, written as
-- dotted names with zero-based array indexes: `meta.next_cursor`,
-- `data.items`, `links[0].href`, `[0]`. The one syntax of every option that
-- points into a reply (pagination, and the rules that read a body).
-- A name is any run of characters but `.`, `[` and `]`; an index is a whole
-- number in brackets, counted from 0 as in JSON and JavaScript.
-- @module connkit.jsonpath
local M = {}

local Path = {}
Path.__index = Path
Path.__name = "connkit.jsonpath"
function Path:__tostring() return self.source end

-- The steps of `s` (strings: object keys, numbers: 1-based Lua indexes),
-- or nil and what is wrong.
local function parse(s)
  if type(s) ~= "string" then return nil, "must be a string, not a " .. type(s) end
  if s == "" then return nil, "must not be empty" end
  local steps, i, n = {}, 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if c == "]" then
      return nil, ("has a stray ']' at character %d"):format(i)
    elseif c == "[" then
      local digits, close = s:match("^(%d+)(%]?)", i + 1)
      if not digits or close == "" then
        return nil, ("has a bad index at character %d (expected [N], N a whole number from 0)"):format(i)
      end
      steps[#steps + 1] = tonumber(digits) + 1
      i = i + #digits + 2
    else
      if c == "." then
        if i == 1 or i == n or s:sub(i + 1, i + 1) == "." or s:sub(i + 1, i + 1) == "[" then
          return nil, ("has an empty name at character %d"):format(i)
        end
        i = i + 1
      elseif i > 1 then
        return nil, ("needs a '.' before the name at character %d"):format(i)
      end
      local name = s:match("^[^%.%[%]]+", i)
      if not name then return nil, ("has no name at character %d"):format(i) end
      steps[#steps + 1] = name
      i = i + #name
    end
  end
  steps.source = s
  return setmetatable(steps, Path)
end

-- compiled paths by source (definitions and calls repeat a few paths)
local cache = setmetatable({}, { __mode = "v" })

--- Compiles a path; raises an error saying what is wrong for bad syntax.
-- @tparam string s the path, e.g. "meta.next_cursor" or "links[0].href"
-- @return the compiled path (tostring gives the source back)
-- @raise for bad syntax, saying what and where ("has an empty name at
--   character 6")
function M.compile(s)
  if getmetatable(s) == Path then return s end
  local p = cache[s]
  if p then return p end
  local err
  p, err = parse(s)
  if not p then error(("JSON path%s %s"):format(type(s) == "string" and (" '" .. s .. "'") or "", err), 2) end
  cache[s] = p
  return p
end

--- The value at `path` in `doc` (a decoded JSON document), or nil when some
-- step is missing or walks into something that is not an object or array.
-- A JSON null comes back as it was decoded (cjson.null).
-- @param doc the decoded document
-- @tparam string|table path a compiled path or a path string
-- @return the value, or nil
-- @raise for a path string of bad syntax
function M.get(doc, path)
  if getmetatable(path) ~= Path then path = M.compile(path) end
  local v = doc
  for i = 1, #path do
    if type(v) ~= "table" then return nil end
    v = v[path[i]]
  end
  return v
end

return M
