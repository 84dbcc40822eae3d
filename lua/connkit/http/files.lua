--- Files in and out: the request options `output` (the body of a 2xx reply
-- streamed to a file), `on_data` (streamed to a function) and `multipart`
-- (a multipart/form-data body of values and files). The transports do the
-- work (csrc/http_sink.c for curl, connkit.transport.ngx_files inside
-- OpenResty); this module checks the options and carries them from a
-- request to the specs made from it (a retry with less time left, a
-- redirect hop).
-- @module connkit.http.files
local errors = require "connkit.errors"
local check = require "connkit.check"

local raise = check.raise
local type, tostring = type, tostring

local M = {}

-- the fields a part may have
local PART_FIELDS = { name = true, value = true, file = true, filename = true, type = true }

-- A name, filename or content type goes into the part's header lines.
local function header_text(v, field)
  if type(v) ~= "string" then raise(("request: option '%s' must be a string, not a %s"):format(field, type(v))) end
  if v:find("[\r\n%z]") then raise(("request: option '%s' holds CR, LF or NUL"):format(field)) end
  return v
end

--- Checks `multipart` (a list of parts) and returns a copy the transports
-- read: { { name =, value = } | { name =, file =, filename =, type = } }.
-- Raises, naming the part and field (`multipart[2].file`), for a
-- malformed part; returns nil and an error with code "io" for a file that
-- cannot be opened for reading.
-- @param parts the option's value
-- @treturn[1] table the parts
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "io")
-- @raise naming the part and field
function M.check_multipart(parts)
  if type(parts) ~= "table" then raise("request: option 'multipart' must be a list of parts, not a " .. type(parts)) end
  local n = #parts
  if n == 0 then raise("request: option 'multipart' must hold at least one part") end
  for k in pairs(parts) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then
      raise("request: option 'multipart' must be a list of parts, not a table with keys")
    end
  end
  local out = {}
  for i = 1, n do
    local p, at = parts[i], ("multipart[%d]"):format(i)
    if type(p) ~= "table" then raise(("request: option '%s' must be a table, not a %s"):format(at, type(p))) end
    for k in pairs(p) do
      if not PART_FIELDS[k] then
        raise(("request: option '%s' has an unknown field '%s' (name, value, file, filename, type)"):format(at, tostring(k)))
      end
    end
    if p.name == nil then raise(("request: option '%s.name' is required"):format(at)) end
    local part = { name = header_text(p.name, at .. ".name") }
    if (p.value == nil) == (p.file == nil) then
      raise(("request: option '%s' needs one of value and file"):format(at))
    end
    if p.value ~= nil then
      local v = p.value
      if type(v) == "number" then v = require("connkit.core").format_number(v) end
      if type(v) ~= "string" then
        raise(("request: option '%s.value' must be a string or a number, not a %s"):format(at, type(v)))
      end
      part.value = v
    else
      if type(p.file) ~= "string" or p.file == "" then
        raise(("request: option '%s.file' must be a path (a non-empty string)"):format(at))
      end
      local f, why = io.open(p.file, "rb")
      if not f then
        return nil, errors.new("io", ("request: %s.file cannot be read: %s"):format(at, tostring(why)))
      end
      local ok, rerr = f:read(0), nil
      if ok == nil then
        -- (read(0) gives nil at the end of an empty file; a directory fails)
        local _, e = f:read(1)
        rerr = e
      end
      f:close()
      if rerr then
        return nil, errors.new("io", ("request: %s.file cannot be read: %s: %s"):format(at, p.file, tostring(rerr)))
      end
      part.file = p.file
    end
    if p.filename ~= nil then part.filename = header_text(p.filename, at .. ".filename") end
    if p.type ~= nil then part.type = header_text(p.type, at .. ".type") end
    out[i] = part
  end
  return out
end

--- Reads the file options of request options `opts` into request `req`.
-- Returns true, or nil and an error (a multipart file that cannot be read).
-- `has_body`: the options give json, form or body too.
-- @tparam connkit.http.request.Request req the request
-- @tparam table opts the request options
-- @tparam boolean has_body json, form or body is given too
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "io")
-- @raise for options that do not go together
function M.prepare(req, opts, has_body)
  if opts.output ~= nil and opts.on_data ~= nil then
    raise("request: give only one of the options output and on_data")
  end
  if opts.output ~= nil then req.output = opts.output end
  if opts.on_data ~= nil then
    local f = opts.on_data
    -- (a callable table: the transports call a function)
    if type(f) ~= "function" then f = function(chunk) return opts.on_data(chunk) end end
    req.on_data = f
  end
  if opts.multipart ~= nil then
    if has_body then raise("request: give only one of the options json, form, body and multipart") end
    if req.method == "GET" or req.method == "HEAD" then
      raise(("request: option 'multipart' needs a method with a body (POST, PUT, ...), not %s"):format(req.method))
    end
    local parts, err = M.check_multipart(opts.multipart)
    if not parts then return nil, err end
    req.multipart = parts
  end
  return true
end

--- Copies the file options of request `req` into spec table `spec` (made
-- from it for a retry with less time left, or a redirect hop); `keep_body`:
-- the hop keeps the method and body (307, 308).
-- @tparam connkit.http.request.Request req the request
-- @tparam table spec the spec (added to)
-- @tparam boolean keep_body the hop keeps the body
-- @treturn table spec
function M.carry(req, spec, keep_body)
  spec.output = rawget(req, "output")
  spec.on_data = rawget(req, "on_data")
  if keep_body then spec.multipart = rawget(req, "multipart") end
  return spec
end

return M
