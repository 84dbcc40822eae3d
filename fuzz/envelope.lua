-- Fuzz target: the file store's envelope (csrc/crypto.c core.seal and
-- core.open, AES-256-GCM with the account bound as associated data).
-- Input: 32 bytes of key, 2 bytes of position, 1 byte of mask, then the
-- associated data and the plaintext separated by a NUL byte.
-- Oracles: open(seal(x)) gives x back and the sealed length is nonce +
-- plaintext + tag; every change of a sealed record fails authentication
-- with the code store_auth: a flipped bit anywhere, a cut at any length,
-- an added byte, another key, other associated data; and the input itself,
-- taken as a sealed record, does not open.
local core = require "connkit.core"

local function refused(what, key, sealed, aad)
  local plain, code = core.open(key, sealed, aad)
  assert(plain == nil, what .. ": a changed record opened")
  assert(code == "store_auth", what .. ": code " .. tostring(code) .. ", not store_auth")
end

return function(data)
  if #data < 35 then return end
  local key = data:sub(1, 32)
  local pos = data:byte(33) * 256 + data:byte(34)
  local mask = data:byte(35)
  local aad, plain = data:sub(36):match("^([^%z]*)%z?(.*)$")

  local sealed = core.seal(key, plain, aad)
  assert(#sealed == 12 + #plain + 16, "sealed length is not nonce + data + tag")
  assert(core.open(key, sealed, aad) == plain, "open(seal(x)) is not x")

  local i = pos % #sealed + 1
  local flipped = string.char(sealed:byte(i) ~ (mask == 0 and 1 or mask))
  refused("a flipped byte", key, sealed:sub(1, i - 1) .. flipped .. sealed:sub(i + 1), aad)
  refused("a cut record", key, sealed:sub(1, pos % #sealed), aad)
  refused("an added byte", key, sealed .. string.char(mask), aad)
  refused("other associated data", key, sealed, aad .. string.char(mask))
  if #aad > 0 then refused("cut associated data", key, sealed, aad:sub(1, -2)) end
  local other = string.char(key:byte(1) ~ (mask == 0 and 1 or mask)) .. key:sub(2)
  refused("another key", other, sealed, aad)
  refused("the input as a record", key, data, aad)
end
