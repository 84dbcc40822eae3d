--- Output helpers of the connkit command: is a stream a terminal, JSON
-- pretty-printed for people, headers the way curl -i shows them.
-- @module connkit.cli.output
local cjson = require "cjson.safe"

local M = {}

local tty = {}
--- True when file descriptor fd (1 stdout, 2 stderr) is a terminal.
-- @tparam integer fd the file descriptor
-- @treturn boolean
function M.is_terminal(fd)
  if tty[fd] == nil then
    local r = os.execute("test -t " .. fd)
    tty[fd] = r == true or r == 0
  end
  return tty[fd]
end

-- Re-indents JSON text (already known to parse): keys keep the server's
-- order, numbers and strings stay as they were written, {} and [] stay
-- apart (decoding and encoding again would lose all three).
local function reindent(text)
  local out, depth, i, n = {}, 0, 1, #text
  local function newline() out[#out + 1] = "\n" .. ("  "):rep(depth) end
  while i <= n do
    local c = text:sub(i, i)
    if c == '"' then
      local j = i + 1
      while true do
        local k = text:find('["\\]', j)
        if not k then j = n break end
        if text:sub(k, k) == "\\" then j = k + 2 else j = k break end
      end
      out[#out + 1] = text:sub(i, j)
      i = j + 1
    elseif c == "{" or c == "[" then
      local close = c == "{" and "}" or "]"
      local k = text:find("[^%s]", i + 1)
      if k and text:sub(k, k) == close then
        out[#out + 1] = c .. close
        i = k + 1
      else
        out[#out + 1] = c
        depth = depth + 1
        newline()
        i = i + 1
      end
    elseif c == "}" or c == "]" then
      depth = depth - 1
      newline()
      out[#out + 1] = c
      i = i + 1
    elseif c == "," then
      out[#out + 1] = ","
      newline()
      i = i + 1
    elseif c == ":" then
      out[#out + 1] = ": "
      i = i + 1
    elseif c:find("%s") then
      i = i + 1
    else
      local j = text:find('[%s,:%]}"]', i) or (n + 1)
      out[#out + 1] = text:sub(i, j - 1)
      i = j
    end
  end
  return table.concat(out)
end

--- `body` indented for people when it is JSON, else nil.
-- @tparam string body the body
-- @treturn string|nil the indented JSON
function M.pretty_json(body)
  if cjson.decode(body) == nil then return nil end
  return reindent(body) .. "\n"
end

--- Writes a reply's body to stdout: pretty JSON on a terminal, as it
-- came otherwise.
-- @tparam connkit.http.response.Response res the reply
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
-- @tparam connkit.http.response.Response res the reply
function M.head(res)
  local names = {}
  for k in pairs(res.headers) do names[#names + 1] = k end
  table.sort(names)
  local lines = { ("%s %d"):format(res.http_version and ("HTTP/" .. tostring(res.http_version)) or "HTTP", res.status) }
  for _, k in ipairs(names) do lines[#lines + 1] = k .. ": " .. tostring(res.headers[k]) end
  io.stdout:write(table.concat(lines, "\r\n"), "\r\n\r\n")
end

return M
