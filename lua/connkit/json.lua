--- JSON request bodies with numbers written as the user wrote them.
-- lua-cjson 2.1 writes every number with "%.14g": 123456789012345 (an id
-- taken from a reply) goes out as 1.2345678901234e+14, a different number.
-- This encoder writes numbers as templates do (core.format_number: whole
-- numbers as integers, others in the fewest digits that read back exactly)
-- and leaves strings to cjson; tables are read as cjson reads them.
-- @module connkit.json
local core = require "connkit.core"
local cjson = require "cjson"

local format_number, encode_string = core.format_number, cjson.encode
local concat, huge, type, pairs, getmetatable = table.concat, math.huge, type, pairs, getmetatable
local null = cjson.null
-- OpenResty's lua-cjson marks empty arrays; Debian's has neither
local empty_array, array_mt = cjson.empty_array, cjson.array_mt or cjson.empty_array_mt

local MAX_DEPTH = 1000 -- as cjson: deeper is taken for a cycle

local M = {}

-- cjson's array test: every key a positive whole number, not too sparse.
-- Returns the length, 0 for an object or an empty table, or nil, why.
local function array_length(t)
  local max, items = 0, 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then return 0 end
    if k > max then max = k end
    items = items + 1
  end
  if max > 10 and max > items * 2 then return nil, "excessively sparse array" end
  return max
end

local function encode(v, out, depth)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = encode_string(v)
  elseif t == "number" then
    if v ~= v or v == huge or v == -huge then error("cannot encode a NaN or infinite number", 0) end
    out[#out + 1] = format_number(v)
  elseif t == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif v == null then
    out[#out + 1] = "null"
  elseif empty_array ~= nil and v == empty_array then
    out[#out + 1] = "[]"
  elseif t == "table" then
    if depth >= MAX_DEPTH then error("nested more than " .. MAX_DEPTH .. " deep (a cycle?)", 0) end
    local n, why = array_length(v)
    if not n then error(why, 0) end
    if n > 0 or (array_mt and getmetatable(v) == array_mt) then
      out[#out + 1] = "["
      for i = 1, n do
        if i > 1 then out[#out + 1] = "," end
        local x = v[i]
        if x == nil then out[#out + 1] = "null" else encode(x, out, depth + 1) end
      end
      out[#out + 1] = "]"
    else
      out[#out + 1] = "{"
      local first = true
      for k, x in pairs(v) do
        local kt = type(k)
        if kt == "number" then
          k = format_number(k)
        elseif kt ~= "string" then
          error("a table key must be a string or a number, not a " .. kt, 0)
        end
        if not first then out[#out + 1] = "," end
        first = false
        out[#out + 1] = encode_string(k)
        out[#out + 1] = ":"
        encode(x, out, depth + 1)
      end
      out[#out + 1] = "}"
    end
  else
    error("a " .. t .. " cannot be encoded", 0)
  end
end

--- The JSON text of `v`, or nil and why it cannot be encoded (a function,
-- NaN, a cycle, a sparse array, a table key that is not a string or number).
-- @param v the value
-- @treturn[1] string the JSON text
-- @return[2] nil
-- @treturn[2] string why
function M.encode(v)
  local out = {}
  local ok, err = pcall(encode, v, out, 0)
  if not ok then return nil, err end
  return concat(out)
end

return M
