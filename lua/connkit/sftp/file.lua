--- Remote files opened with `session:open(path, mode)`: read, write, seek,
-- lines and close with the behaviour of Lua's io files. Reads are buffered
-- (one large SFTP read serves many small ones), writes are buffered up to
-- the chunk size and sent as one pipelined write.
-- @module connkit.sftp.file
local errors = require "connkit.errors"
local whole = require("connkit.sftp.schema").whole

local File = {}
File.__index = File
File.__name = "connkit.sftp.file"

local raise = require("connkit.options").raise -- (at the user's line)

local M = {}

local LINE_CHUNK = 64 * 1024

--- Wraps a core file handle.
-- @param cf the core file handle
-- @tparam string path the remote path (for messages)
-- @param flags the open mode's flags
-- @tparam integer chunk the buffer size
-- @treturn table the file
function M.new(cf, path, flags, chunk)
  local self = setmetatable({
    _f = cf, path = path, _rbuf = "", _wbuf = {}, _wlen = 0,
    _chunk = chunk or 1024 * 1024, _append = flags:find("a", 1, true) ~= nil,
  }, File)
  if self._append then
    local st = cf:fstat()
    if st and st.size then cf:seek(st.size) end
  end
  return self
end

local function fail(self, code, msg)
  return nil, errors.from_core(code, (msg or code) .. " (" .. self.path .. ")")
end

local function check(self)
  if not self._f:is_open() then raise("attempt to use a closed SFTP file") end
end

-- Sends the write buffer. Returns true or nil, err.
local function flush(self)
  if self._wlen == 0 then return true end
  local data = table.concat(self._wbuf)
  self._wbuf, self._wlen = {}, 0
  if self._append then -- keep offsets at the end, as O_APPEND does
    local st = self._f:fstat()
    if st and st.size then self._f:seek(st.size) end
  end
  local ok, code, msg = self._f:write(data)
  if not ok then return fail(self, code, msg) end
  return true
end

-- Drops read-ahead data, moving the remote position back to the logical one.
local function drop_read(self)
  if #self._rbuf > 0 then
    self._f:seek(self._f:tell() - #self._rbuf)
    self._rbuf = ""
  end
end

-- Fills the read buffer with at least one more block; false at end of file.
local function fill(self, n)
  local data, code, msg = self._f:read(n or LINE_CHUNK)
  if not data then return nil, code, msg end
  if data == "" then return false end
  self._rbuf = self._rbuf .. data
  return true
end

local function read_n(self, n)
  if n == 0 then
    if #self._rbuf > 0 then return "" end
    local ok, code, msg = fill(self)
    if ok == nil then return fail(self, code, msg) end
    return ok and "" or nil
  end
  if #self._rbuf == 0 and n >= LINE_CHUNK then -- large read: straight through
    local data, code, msg = self._f:read(n)
    if not data then return fail(self, code, msg) end
    return data ~= "" and data or nil
  end
  while #self._rbuf < n do
    local ok, code, msg = fill(self, math.max(LINE_CHUNK, n - #self._rbuf))
    if ok == nil then return fail(self, code, msg) end
    if not ok then break end
  end
  if #self._rbuf == 0 then return nil end
  local out = self._rbuf:sub(1, n)
  self._rbuf = self._rbuf:sub(n + 1)
  return out
end

local function read_line(self, keep)
  local start = 1
  while true do
    local i = self._rbuf:find("\n", start, true)
    if i then
      local line = self._rbuf:sub(1, keep and i or i - 1)
      self._rbuf = self._rbuf:sub(i + 1)
      return line
    end
    start = #self._rbuf + 1
    local ok, code, msg = fill(self)
    if ok == nil then return fail(self, code, msg) end
    if not ok then
      if #self._rbuf == 0 then return nil end
      local line = self._rbuf
      self._rbuf = ""
      return line
    end
  end
end

local function read_all(self)
  local parts = { self._rbuf }
  self._rbuf = ""
  while true do
    local data, code, msg = self._f:read(self._chunk)
    if not data then return fail(self, code, msg) end
    if data == "" then break end
    parts[#parts + 1] = data
  end
  return table.concat(parts)
end

local function read_number(self)
  local line, err = read_line(self, false)
  if not line then return nil, err end
  local n = tonumber(line:match("^%s*(%S+)"))
  return n
end

local function read_one(self, fmt)
  if type(fmt) == "number" then
    if fmt % 1 ~= 0 or fmt < 0 then
      raise("bad argument to 'read' (byte count must be a whole number >= 0, not " .. tostring(fmt) .. ")")
    end
    return read_n(self, whole(fmt))
  end
  if type(fmt) ~= "string" then raise("bad argument to 'read' (invalid format, a " .. type(fmt) .. ")") end
  fmt = tostring(fmt):gsub("^%*", "")
  local c = fmt:sub(1, 1)
  if c == "l" then return read_line(self, false) end
  if c == "L" then return read_line(self, true) end
  if c == "a" then return read_all(self) end
  if c == "n" then return read_number(self) end
  raise("bad argument to 'read' (invalid format '" .. fmt .. "')")
end

--- Reads like io: formats "l" (default), "L", "a", "n" or a byte count.
-- Returns nil at end of file; nil, err on failure.
-- @param ... the formats
-- @return the values read (nil at end of file), or nil and an error
function File:read(...)
  check(self)
  local ok, err = flush(self)
  if not ok then return nil, err end
  local n = select("#", ...)
  if n == 0 then return read_one(self, "l") end
  local out = {}
  for i = 1, n do
    local v, e = read_one(self, (select(i, ...)))
    if v == nil then
      if e then return nil, e end
      out[i] = nil
      return unpack and unpack(out, 1, i) or table.unpack(out, 1, i)
    end
    out[i] = v
  end
  return (unpack or table.unpack)(out, 1, n)
end

--- Writes strings or numbers; returns the file, or nil, err.
-- @param ... strings or numbers
-- @treturn[1] table the file
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function File:write(...)
  check(self)
  drop_read(self)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "number" then v = tostring(v) end
    if type(v) ~= "string" then
      raise("bad argument #" .. i .. " to 'write' (string expected, got " .. type(v) .. ")")
    end
    self._wbuf[#self._wbuf + 1] = v
    self._wlen = self._wlen + #v
    if self._wlen >= self._chunk then
      local ok, err = flush(self)
      if not ok then return nil, err end
    end
  end
  return self
end

--- Sends buffered writes now.
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function File:flush()
  check(self)
  local ok, err = flush(self)
  if not ok then return nil, err end
  return self
end

--- Like io's seek: whence "set" | "cur" (default) | "end", offset (default
-- 0). Returns the new position from the start of the file, or nil, err.
-- @tparam[opt="cur"] string whence "set" | "cur" | "end"
-- @tparam[opt=0] integer offset the offset
-- @treturn[1] integer the position
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function File:seek(whence, offset)
  check(self)
  whence, offset = whence or "cur", offset or 0
  if type(whence) ~= "string" then raise("bad argument #1 to 'seek' (string expected, got " .. type(whence) .. ")") end
  if type(offset) ~= "number" or offset % 1 ~= 0 then
    raise("bad argument #2 to 'seek' (whole number expected, got " .. (type(offset) == "number" and tostring(offset)
      or type(offset)) .. ")")
  end
  offset = whole(offset)
  local ok, err = flush(self)
  if not ok then return nil, err end
  local pos
  if whence == "set" then
    pos = offset
  elseif whence == "cur" then
    pos = self._f:tell() - #self._rbuf + offset
    if offset == 0 then return pos end
  elseif whence == "end" then
    local st, code, msg = self._f:fstat()
    if not st then return fail(self, code, msg) end
    pos = (st.size or 0) + offset
  else
    raise("bad argument #1 to 'seek' (invalid option '" .. tostring(whence) .. "')")
  end
  if pos < 0 then return nil, errors.new("invalid_argument", "seek before the start of " .. self.path) end
  self._rbuf = ""
  self._f:seek(pos)
  return pos
end

--- An iterator over the file like io's file:lines(...) (default "l").
-- It does not close the file.
-- @param ... the formats
-- @treturn function the iterator
function File:lines(...)
  check(self)
  local fmts = { ... }
  local n = select("#", ...)
  return function()
    local v, err
    if n == 0 then v, err = self:read("l") else v, err = self:read((unpack or table.unpack)(fmts, 1, n)) end
    if v == nil and err then error(err, 2) end
    return v
  end
end

--- Attributes of the open file (see session:stat).
-- @treturn[1] table the attributes
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function File:stat()
  check(self)
  local st, code, msg = self._f:fstat()
  if not st then return fail(self, code, msg) end
  return st
end

--- Accepted for io compatibility; buffering is handled internally.
-- @treturn boolean true
function File:setvbuf() return true end

--- Sends what is buffered and closes the file. Idempotent; also runs on
-- `<close>` and garbage collection (a write that fails then is lost: call
-- close() to see it). Returns true, or nil, err when buffered data could
-- not be written.
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function File:close()
  if not self._f:is_open() then return true end
  local ok, err = flush(self)
  self._f:close()
  if not ok then return nil, err end
  return true
end
File.__close = function(self) self:close() end
File.__gc = File.__close

function File:__tostring()
  return ("connkit.sftp.file %s (%s)"):format(self.path, self._f:is_open() and "open" or "closed")
end

M.File = File
return M
