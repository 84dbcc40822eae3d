--- Run-time errors: tables with a stable `code`, a `message` and, where known,
-- the HTTP `status`. `tostring(err)` is the message. Messages never carry a
-- secret: they are built from what was being done, not from values.
-- The codes are listed in the README, "Errors".
-- @module connkit.errors
local errors = {}

--- A run-time error, as returned after nil (`local res, err = ...`). It
-- behaves like its message where a string is expected: tostring(err),
-- print(err), "failed: " .. err.
-- @table Error
-- @field code a stable string ("timeout", "connect", "invalid_grant",
--   "reauthorize", "host_key_mismatch", ...)
-- @field message what failed, for people; never a secret
-- @field status the HTTP status, where one is known
-- @field attempts for requests: how many attempts were made
-- @field retry_at for "rate_limited": when the request may go (epoch
--   seconds)

local Error = {}
Error.__index = Error
Error.__tostring = function(e) return e.message end
Error.__name = "connkit.error"
-- "failed: " .. err and err .. "!" work as with a string message
local function text(v)
  if getmetatable(v) == Error then return v.message end
  local t = type(v)
  if t ~= "string" and t ~= "number" then error("attempt to concatenate a " .. t .. " value", 3) end
  return v
end
Error.__concat = function(a, b) return text(a) .. text(b) end

-- "…/connkit/request.lua:70: " (and csrc/x.c:12: ): where inside connkit a
-- Lua error was raised, caught and turned into a message; users get no
-- use from it, so it is cut out
local POSITION = "[^%s:]*connkit/[%w_/]+%.lua:%d+:%s*"
local C_POSITION = "[^%s:]*csrc/[%w_]+%.[ch]:%d+:%s*"

--- `message` without positions inside connkit (what pcall adds to an error
-- raised in connkit's own code).
-- @param message a string (anything else is given back as it is)
-- @return the message without "connkit/x.lua:12:" positions
-- @local
function errors.clean(message)
  if type(message) ~= "string" then return message end
  if message:find("%.lua:%d+") or message:find("%.[ch]:%d+") then
    message = message:gsub(POSITION, ""):gsub(C_POSITION, "")
  end
  return message
end
local clean = errors.clean

--- A new error table.
-- @tparam string code stable machine-readable code, e.g. "timeout"
-- @tparam string message what failed, for people
-- @tparam[opt] table extra more fields (status, attempts, ...); code and
--   message are not overwritten
-- @treturn Error the error
function errors.new(code, message, extra)
  local e = { code = code, message = clean(message) or code }
  if extra then
    for k, v in pairs(extra) do
      if e[k] == nil then e[k] = v end
    end
  end
  return setmetatable(e, Error)
end

--- Wraps the (code, message) pair that C functions return after nil.
-- @tparam string|nil code the C function's code (nil: "internal")
-- @tparam string message its message
-- @tparam[opt] table extra more fields
-- @treturn Error the error
-- @local
function errors.from_core(code, message, extra)
  return errors.new(code or "internal", message, extra)
end

--- True when v is an error made here.
-- @param v any value
-- @treturn boolean whether v is a connkit error
function errors.is(v)
  return getmetatable(v) == Error
end

--- A copy of `message` with every occurrence of the given secret strings
-- replaced by "***" (used on messages that embed text from a peer or library).
-- @tparam string|nil message the text
-- @tparam[opt] {string,...} secrets the strings to hide (shorter than 4
--   characters: left alone)
-- @treturn string|nil the message with the secrets replaced
-- @local
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

--- The first `limit` characters of `text` with every occurrence of the
-- secret strings replaced by "***", for an error message that quotes a peer.
-- Secrets are found before the text is cut (an occurrence that begins
-- before the cut is replaced whole, so no prefix of it shows), and the cut
-- is made in the text as it came. Returns the excerpt and true when text
-- was cut.
-- @tparam string text the text to quote
-- @tparam integer limit how many characters to keep
-- @tparam[opt] {string,...} secrets the strings to hide
-- @treturn string the excerpt
-- @treturn boolean true when text was cut
-- @local
function errors.excerpt(text, limit, secrets)
  local longest = 0
  for _, s in ipairs(secrets or {}) do
    if type(s) == "string" and #s > longest then longest = #s end
  end
  -- every occurrence that begins within the first `limit` characters ends
  -- within the window
  local window = text:sub(1, limit + longest)
  local masked = {}
  for _, s in ipairs(secrets or {}) do
    if type(s) == "string" and #s >= 4 then
      local i = 1
      while true do
        local a, b = window:find(s, i, true)
        if not a or a > limit then break end
        for p = a, b do masked[p] = true end
        i = a + 1
      end
    end
  end
  local out, i, stop = {}, 1, math.min(limit, #window)
  while i <= stop do
    if masked[i] then
      out[#out + 1] = "***"
      while masked[i] do i = i + 1 end
    else
      local j = i
      while j < stop and not masked[j + 1] do j = j + 1 end
      out[#out + 1] = window:sub(i, j)
      i = j + 1
    end
  end
  return table.concat(out), #text >= i
end

return errors
