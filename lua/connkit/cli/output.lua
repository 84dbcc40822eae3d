--- Output helpers of the connkit command: is a stream a terminal, JSON
-- pretty-printed for people, headers the way curl -i shows them.
-- @module connkit.cli.output
local cjson = require "cjson.safe"
local json = require "connkit.json"

local M = {}

local tty = {}
--- True when file descriptor fd (1 stdout, 2 stderr) is a terminal.
function M.is_terminal(fd)
  if tty[fd] == nil then
    local r = os.execute("test -t " .. fd)
    tty[fd] = r == true or r == 0
  end
  return tty[fd]
end

local function pretty(v, indent, out)
  local t = type(v)
  if t == "table" and v ~= cjson.null then
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    if n == 0 then out[#out + 1] = (getmetatable(v) == cjson.array_mt) and "[]" or "{}" return end
    local inner = indent .. "  "
    if n == #v then
      out[#out + 1] = "[\n"
      for i = 1, n do
        out[#out + 1] = inner
        pretty(v[i], inner, out)
        out[#out + 1] = i < n and ",\n" or "\n"
      end
      out[#out + 1] = indent .. "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = "{\n"
      for i, k in ipairs(keys) do
        local val = v[k]
        if val == nil then val = v[tonumber(k)] end
        out[#out + 1] = inner .. cjson.encode(k) .. ": "
        pretty(val, inner, out)
        out[#out + 1] = i < #keys and ",\n" or "\n"
      end
      out[#out + 1] = indent .. "}"
    end
  elseif v == cjson.null then
    out[#out + 1] = "null"
  else
    out[#out + 1] = json.encode(v)
  end
end

--- `body` indented with sorted keys when it is JSON, else nil.
function M.pretty_json(body)
  local v = cjson.decode(body)
  if v == nil then return nil end
  local out = {}
  pretty(v, "", out)
  return table.concat(out) .. "\n"
end

--- Writes a reply's body to stdout: pretty JSON on a terminal, as it
-- came otherwise.
function M.body(res)
  local body = res.body or ""
  if M.is_terminal(1) and (res.headers["content-type"] or ""):find("json") then
    local p = M.pretty_json(body)
    if p then io.stdout:write(p) return end
  end
  io.stdout:write(body)
end

--- Writes the status line and the headers (lower-case names, sorted),
-- then an empty line.
function M.head(res)
  local names = {}
  for k in pairs(res.headers) do names[#names + 1] = k end
  table.sort(names)
  local lines = { ("%s %d"):format(res.http_version and ("HTTP/" .. tostring(res.http_version)) or "HTTP", res.status) }
  for _, k in ipairs(names) do lines[#lines + 1] = k .. ": " .. tostring(res.headers[k]) end
  io.stdout:write(table.concat(lines, "\r\n"), "\r\n\r\n")
end

return M
