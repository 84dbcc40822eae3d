--- The sealed envelope of the stores that encrypt their records (file,
-- shared): the key from the store's options, and records sealed with
-- AES-256-GCM (OpenSSL, a fresh random nonce per seal) behind a format tag.
-- The tag and the account id are bound as associated data, so a record
-- copied onto another account's name (or into another store kind) does not
-- open.
-- @module connkit.store.envelope
local core = require "connkit.core"
local raise = require("connkit.check").raise

local M = {}

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- The 32-byte key from base64 (or base64url) text; nil, why on failure.
local function decode_key(text)
  text = trim(text)
  local raw = core.b64decode(text) or core.b64url_decode(text)
  if not raw then return nil, "is not valid base64" end
  if #raw ~= 32 then return nil, ("must decode to 32 bytes (got %d)"):format(#raw) end
  return raw
end

--- The 32-byte key from a store's options `key` (base64) or `key_file`;
-- raises naming the option. `who` names the store in messages; without
-- `required`, neither option gives nil (records are not encrypted).
-- @tparam string who e.g. "connkit.store.file"
-- @tparam table opts the store's (checked) options
-- @tparam boolean required
-- @treturn string|nil the raw key
function M.load_key(who, opts, required)
  if opts.key ~= nil and opts.key_file ~= nil then
    raise(who .. ": give either option 'key' or option 'key_file', not both")
  end
  if opts.key ~= nil then
    if type(opts.key) ~= "string" then
      raise(who .. ": option 'key' must be a base64 string of 32 bytes, got " .. type(opts.key))
    end
    local key, why = decode_key(opts.key)
    if not key then raise(who .. ": option 'key' " .. why) end
    return key
  end
  if opts.key_file ~= nil then
    if type(opts.key_file) ~= "string" or opts.key_file == "" then
      raise(who .. ": option 'key_file' must be a path string")
    end
    local data, _, msg = core.read_file(opts.key_file, true)
    if not data then raise(who .. ": option 'key_file': " .. msg) end
    if #data == 32 then return data end     -- raw key bytes
    local key, why = decode_key(data)
    if not key then
      raise(who .. ": option 'key_file': the file " .. why
        .. " (expected 32 raw bytes or their base64)")
    end
    return key
  end
  if required then raise(who .. ": option 'key' (base64 of 32 bytes) or 'key_file' is required") end
  return nil
end

--- `plain` sealed for account `id`: `magic` .. nonce, ciphertext and tag.
-- @tparam string key raw key
-- @tparam string magic the format tag (also bound as associated data)
-- @tparam string id the account id (bound as associated data)
-- @tparam string plain
-- @treturn string
function M.seal(key, magic, id, plain)
  return magic .. core.seal(key, plain, magic .. "\0" .. id)
end

--- The plain text of an envelope made by M.seal with the same key, tag and
-- id; nil, why when it is not one (`"tag"`: another format) or does not
-- authenticate (`"auth"`: wrong key, changed, another account's).
-- @tparam string key raw key
-- @tparam string magic the format tag
-- @tparam string id the account id
-- @tparam string data the envelope
-- @treturn[1] string the plain text
-- @return[2] nil
-- @treturn[2] string "tag" or "auth"
function M.open(key, magic, id, data)
  if data:sub(1, #magic) ~= magic then return nil, "tag" end
  local plain = core.open(key, data:sub(#magic + 1), magic .. "\0" .. id)
  if not plain then return nil, "auth" end
  return plain
end

return M
