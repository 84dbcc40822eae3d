--- Files in and out for the ngx transport: the multipart/form-data body
-- libcurl's MIME API would send (the same part headers and layout, a
-- boundary of its own, files read and sent in pieces), and the sinks of a
-- 2xx reply body: a file (`output`: written to path .. ".part", renamed
-- over path once complete) or a function (`on_data`).
-- @module connkit.transport.ngx_files
local core = require "connkit.core"

local gsub, lower, match, format = string.gsub, string.lower, string.match, string.format
local open, remove, rename = io.open, os.remove, os.rename
local pcall, tostring = pcall, tostring

local M = {}

local PIECE = 65536 -- bytes read from a file per send

-- libcurl's content types by file name extension (lib/mime.c)
local TYPES = {
  gif = "image/gif", jpg = "image/jpeg", jpeg = "image/jpeg", png = "image/png",
  svg = "image/svg+xml", txt = "text/plain", htm = "text/html", html = "text/html",
  pdf = "application/pdf", xml = "application/xml",
}

local function type_for(name)
  local ext = name and match(name, "%.([%w]+)$")
  return ext and TYPES[lower(ext)] or nil
end

-- a quoted-string of a Content-Disposition (libcurl's form escaping; CR
-- and LF are refused before)
local function quoted(s)
  return (gsub(s, '"', "%%22"))
end

--- The multipart body of `parts` (checked by connkit.http.files): a table
-- { content_type, length, pieces } where each piece is a string or
-- { file = path, size = n }. Returns it, or nil, "io", message for a file
-- that cannot be read now.
-- @tparam table parts the checked parts
-- @treturn[1] table the body
-- @return[2] nil
-- @treturn[2] string the error code
-- @treturn[2] string the message
function M.multipart(parts)
  local boundary = "------------------------" .. core.hex(core.random(8))
  local pieces, length = {}, 0
  local function add(p)
    pieces[#pieces + 1] = p
    length = length + (type(p) == "string" and #p or p.size)
  end
  for i = 1, #parts do
    local p = parts[i]
    local filename = p.filename
    if p.file and not filename then filename = match(p.file, "([^/]*)$") end
    local ctype = p.type
    if not ctype then
      if p.file then
        ctype = type_for(filename) or type_for(p.file) or "application/octet-stream"
      else
        ctype = type_for(filename)
      end
      -- (libcurl leaves out text/plain for a part without a file name)
      if ctype == "text/plain" and not filename then ctype = nil end
    end
    local head = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"" .. quoted(p.name) .. "\""
    if filename then head = head .. "; filename=\"" .. quoted(filename) .. "\"" end
    head = head .. "\r\n"
    if ctype then head = head .. "Content-Type: " .. ctype .. "\r\n" end
    add(head .. "\r\n")
    if p.file then
      local f, why = open(p.file, "rb")
      if not f then return nil, "io", format("multipart[%d].file cannot be read: %s", i, tostring(why)) end
      local size = f:seek("end")
      f:close()
      add({ file = p.file, size = size })
      add("\r\n")
    else
      add(p.value .. "\r\n")
    end
  end
  add("--" .. boundary .. "--\r\n")
  return { content_type = "multipart/form-data; boundary=" .. boundary, length = length, pieces = pieces }
end

--- Sends the pieces of multipart body `mp` on `sock`. Returns true, or nil
-- and the error of sock:send (or "io: ..." for a file that changed size or
-- cannot be read).
-- @param sock the connected cosocket
-- @tparam table mp the multipart body
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] string the error
function M.send(sock, mp)
  for _, p in ipairs(mp.pieces) do
    if type(p) == "string" then
      local ok, err = sock:send(p)
      if not ok then return nil, err end
    else
      local f, why = open(p.file, "rb")
      if not f then return nil, "io: " .. tostring(why) end
      local left = p.size
      while left > 0 do
        local data = f:read(left < PIECE and left or PIECE)
        if not data then
          f:close()
          return nil, "io: " .. p.file .. " became shorter while it was sent"
        end
        left = left - #data
        local ok, err = sock:send(data)
        if not ok then
          f:close()
          return nil, err
        end
      end
      f:close()
    end
  end
  return true
end

local Sink = {}
Sink.__index = Sink

--- The sink of spec `spec` (its output or on_data), or nil when it has none.
-- @tparam table spec the request
-- @treturn table|nil the sink: write(data), finish(), abandon(), size
function M.sink(spec)
  local output, on_data = rawget(spec, "output"), rawget(spec, "on_data")
  if not output and not on_data then return nil end
  return setmetatable({ output = output, part = output and (output .. ".part"), on_data = on_data, size = 0 }, Sink)
end

--- Takes the next piece of the body: true, or nil, code, message (the
-- transfer stops).
-- @tparam string data the piece
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] string the error code
-- @treturn[2] string the message
function Sink:write(data)
  if self.on_data then
    local ok, r = pcall(self.on_data, data)
    if not ok then return nil, "aborted", "on_data raised an error: " .. tostring(r) end
    if r == false then return nil, "aborted", "on_data returned false: the transfer was stopped" end
  else
    if not self.f then
      local f, why = open(self.part, "wb")
      if not f then return nil, "io", "cannot create " .. tostring(why) end
      self.f = f
    end
    local ok, why = self.f:write(data)
    if not ok then return nil, "io", "cannot write " .. tostring(why) end
  end
  self.size = self.size + #data
  return true
end

--- The body is complete: the file is renamed over the output. Returns
-- true, or nil, "io", message.
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] string the error code
-- @treturn[2] string the message
function Sink:finish()
  if not self.output then return true end
  if not self.f then -- an empty body: an empty file
    local f, why = open(self.part, "wb")
    if not f then return nil, "io", "cannot create " .. tostring(why) end
    self.f = f
  end
  local f = self.f
  self.f = nil
  local ok, why = f:flush()
  f:close()
  if ok then ok, why = rename(self.part, self.output) end
  if not ok then
    remove(self.part)
    return nil, "io", "cannot finish " .. self.output .. ": " .. tostring(why)
  end
  return true
end

--- The transfer failed: the .part is removed, the output left as it was;
-- the sink starts again from nothing (another attempt).
function Sink:abandon()
  if self.f then
    self.f:close()
    self.f = nil
    remove(self.part)
  end
  self.size = 0
end

return M
