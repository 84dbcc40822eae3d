--- Run-time errors: tables with a stable `code`, a `message` and, where known,
-- the HTTP `status`. `tostring(err)` is the message. Messages never carry a
-- secret: they are built from what was being done, not from values.
-- @module connkit.errors
local errors = {}

local Error = {}
Error.__index = Error
Error.__tostring = function(e) return e.message end
Error.__name = "connkit.error"

--- A new error table.
-- @tparam string code stable machine-readable code, e.g. "timeout"
-- @tparam string message what failed, for people
-- @tparam[opt] table extra more fields (status, attempts, ...)
function errors.new(code, message, extra)
  local e = { code = code, message = message or code }
  if extra then
    for k, v in pairs(extra) do
      if e[k] == nil then e[k] = v end
    end
  end
  return setmetatable(e, Error)
end

--- Wraps the (code, message) pair that C functions return after nil.
function errors.from_core(code, message, extra)
  return errors.new(code or "internal", message, extra)
end

--- True when v is an error made here.
function errors.is(v)
  return getmetatable(v) == Error
end

--- A copy of `message` with every occurrence of the given secret strings
-- replaced by "***" (used on messages that embed text from a peer or library).
function errors.redact(message, secrets)
  if not secrets or message == nil then return message end
  for _, s in ipairs(secrets) do
    if type(s) == "string" and #s >= 4 then
      local i = 1
      while true do
        local a, b = message:find(s, i, true)
        if not a then break end
        message = message:sub(1, a - 1) .. "***" .. message:sub(b + 1)
        i = a + 3
      end
    end
  end
  return message
end

return errors
