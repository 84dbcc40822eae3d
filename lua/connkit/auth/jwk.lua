--- JWS keys: key objects made from PEM text, a JWK (RFC 7517) or a shared
-- secret, the public JWK of a key, RFC 7638 thumbprints, and JWK Sets turned
-- into key lists. The key bytes stay in C (csrc/jws.c) or, for a secret, in
-- a table private to this module: a key object's fields, `tostring` and
-- error messages never show key material or a password.
-- @module connkit.auth.jwk
local core = require "connkit.core"
local errors = require "connkit.errors"

local b64url_encode, b64url_decode = core.b64url_encode, core.b64url_decode
local type, ipairs, tostring, setmetatable, getmetatable, error =
  type, ipairs, tostring, setmetatable, getmetatable, error
local concat = table.concat

local M = {}

--- The key type each JWS alg needs ("oct": a shared secret).
M.ALG_KTY = { RS256 = "RSA", PS256 = "RSA", ES256 = "EC", EdDSA = "OKP", HS256 = "oct" }
--- The alg used with a key of each type when none is named.
M.DEFAULT_ALG = { RSA = "RS256", EC = "ES256", OKP = "EdDSA", oct = "HS256" }

-- key object -> its pkey userdata or secret string (weak: goes with the key)
local material = setmetatable({}, { __mode = "k" })

local Key = {}
Key.__index = Key
Key.__name = "connkit.jwt.key"
Key.__tostring = function(k)
  return "connkit.jwt.key (" .. k.kty .. " " .. k.kind
    .. (k.kid and (", kid " .. k.kid) or "") .. ")"
end

--- True when v is a key object made by `key`.
-- @param v any value
-- @treturn boolean
function M.is_key(v)
  return getmetatable(v) == Key
end

--- The pkey userdata or secret string of a key object (for jwt.lua).
-- @local
function M.material(k)
  return material[k]
end

local function key_error(message)
  return nil, errors.new("key", "jwt key: " .. message)
end

local function new_key(fields, stuff)
  local k = setmetatable(fields, Key)
  material[k] = stuff
  return k
end

-- Builds the public key of a JWK table; nil, err naming the member at fault.
local function from_jwk(jwk)
  local kty = jwk.kty
  local function member(name)
    local v = jwk[name]
    if type(v) ~= "string" or v == "" then return nil, "the JWK has no " .. name end
    local raw = b64url_decode(v)
    if not raw then return nil, "the JWK's " .. name .. " is not base64url" end
    return raw
  end
  local a, b, why
  if kty == "RSA" then
    a, why = member("n")
    if a then
      b, why = member("e")
      if not b then a = nil end
    end
  elseif kty == "EC" or kty == "OKP" then
    a, why = member("x")
    if a and kty == "EC" then
      b, why = member("y")
      if not b then a = nil end
    end
    if a and type(jwk.crv) ~= "string" then a, why = nil, "the JWK has no crv" end
  else
    return key_error("unsupported JWK kty " .. (type(kty) == "string" and kty:sub(1, 20) or tostring(kty))
      .. " (RSA, EC and OKP are)")
  end
  if not a then return key_error(why) end
  local pkey, _, msg = core.pkey_from_jwk(kty, a, b, jwk.crv)
  if not pkey then return key_error(msg) end
  return pkey
end

local function check_string(spec, name)
  local v = spec[name]
  if v ~= nil and type(v) ~= "string" then
    error("connkit.jwt.key: " .. name .. " must be a string", 3)
  end
  return v
end

--- A key object.
-- `key{ pem = text [, password =] }` (a private key: PKCS#8 or traditional
-- RSA/EC, encrypted or not; or a public key or certificate),
-- `key{ jwk = table }` (a public JWK: RSA, EC P-256, OKP Ed25519; private
-- members are ignored), or `key{ secret = string }` (HS256). Optional
-- `kid` and `alg` (taken from the JWK when it has them).
-- @tparam table spec exactly one of `pem` (string; with `password`), `jwk`
--   (table) or `secret` (string); `kid`, `alg` (optional strings)
-- @return the key, or nil and an error with code "key" (unreadable PEM,
-- wrong or missing password, a JWK that is not a valid key)
-- @raise for a spec of the wrong shape (none or two of pem/jwk/secret, a
--   field of the wrong type, an unsupported alg)
function M.key(spec)
  if type(spec) ~= "table" then error("connkit.jwt.key: expects a table with pem, jwk or secret", 2) end
  local n = (spec.pem ~= nil and 1 or 0) + (spec.jwk ~= nil and 1 or 0) + (spec.secret ~= nil and 1 or 0)
  if n ~= 1 then error("connkit.jwt.key: give exactly one of pem, jwk or secret", 2) end
  local kid, alg = check_string(spec, "kid"), check_string(spec, "alg")
  local password = check_string(spec, "password")
  if password and spec.pem == nil then error("connkit.jwt.key: password goes with pem", 2) end
  if alg and not M.ALG_KTY[alg] then error("connkit.jwt.key: unsupported alg " .. alg, 2) end
  if spec.secret ~= nil then
    local s = spec.secret
    if type(s) ~= "string" or s == "" then error("connkit.jwt.key: secret must be a non-empty string", 2) end
    if alg and alg ~= "HS256" then error("connkit.jwt.key: a secret goes with HS256, not " .. alg, 2) end
    return new_key({ kind = "secret", kty = "oct", kid = kid, alg = alg }, s)
  end
  local pkey, use
  if spec.pem ~= nil then
    if type(spec.pem) ~= "string" then error("connkit.jwt.key: pem must be a string", 2) end
    local _, msg
    pkey, _, msg = core.pkey_load(spec.pem, password)
    if not pkey then return key_error(errors.redact(msg, { password })) end
  else
    local jwk = spec.jwk
    if type(jwk) ~= "table" then error("connkit.jwt.key: jwk must be a table", 2) end
    local err
    pkey, err = from_jwk(jwk)
    if not pkey then return nil, err end
    if type(jwk.kid) == "string" then kid = kid or jwk.kid end
    if type(jwk.alg) == "string" then alg = alg or jwk.alg end
    if type(jwk.use) == "string" then use = jwk.use end
  end
  local kty, crv, _, _, private, bits = pkey:params()
  if alg and not M.ALG_KTY[alg] then return key_error("the JWK's alg " .. alg:sub(1, 20) .. " is not supported") end
  if alg and M.ALG_KTY[alg] ~= kty then
    return key_error("alg " .. alg:sub(1, 20) .. " does not fit this " .. kty .. " key")
  end
  return new_key({ kind = private and "private" or "public", kty = kty, crv = crv,
    bits = bits, kid = kid, alg = alg, use = use }, pkey)
end

--- A new private key object (such as a per-account DPoP key).
-- `generate{ alg = "ES256" }` (EC P-256; "EdDSA": Ed25519; "RS256" or
-- "PS256": RSA of `bits`, default 2048), optional `kid`. Its
-- `private_pem()` is what to keep (encrypted) to use it again.
-- @tparam table spec `alg` (required), `bits` (RSA only), `kid`
-- @return the key object
-- @raise for a missing or bad alg, or bits given for a key that is not RSA
function M.generate(spec)
  if type(spec) ~= "table" then error("connkit.jwt.generate: expects a table with alg", 2) end
  local alg, kid = check_string(spec, "alg"), check_string(spec, "kid")
  local kty = M.ALG_KTY[alg or ""]
  if not kty or kty == "oct" then error("connkit.jwt.generate: alg must be RS256, PS256, ES256 or EdDSA", 2) end
  if spec.bits ~= nil and (kty ~= "RSA" or type(spec.bits) ~= "number") then
    error("connkit.jwt.generate: bits is a number, for RSA only", 2)
  end
  local pkey = core.pkey_generate(kty, spec.bits)
  local _, crv, _, _, _, bits = pkey:params()
  return new_key({ kind = "private", kty = kty, crv = crv, bits = bits, kid = kid, alg = alg }, pkey)
end

--- The private key as unencrypted PKCS #8 PEM text, to be stored encrypted
-- (a store with a key) and read back with `key{ pem = }`. Raises for a
-- public key or a secret.
-- @treturn string the PEM text
function Key:private_pem()
  if self.kind ~= "private" then error("connkit.jwt.key: only a private key has a private PEM", 2) end
  return material[self]:private_pem()
end

--- The public JWK of a key object (kty and its public members only; no kid,
-- alg or use), e.g. for a DPoP proof's `jwk` header. Raises for a secret.
-- @treturn table the JWK (kty, and n, e or crv, x, y)
function Key:public_jwk()
  local pkey = material[self]
  if self.kind == "secret" then error("connkit.jwt.key: a secret has no public JWK", 2) end
  local kty, crv, a, b = pkey:params()
  if kty == "RSA" then return { kty = kty, n = b64url_encode(a), e = b64url_encode(b) } end
  if kty == "EC" then return { kty = kty, crv = crv, x = b64url_encode(a), y = b64url_encode(b) } end
  return { kty = kty, crv = crv, x = b64url_encode(a) }
end

--- The public key as SubjectPublicKeyInfo PEM text. Raises for a secret.
-- @treturn string the PEM text
function Key:public_pem()
  if self.kind == "secret" then error("connkit.jwt.key: a secret has no public key", 2) end
  return material[self]:public_pem()
end

-- RFC 7638 3.2: the required members of each kty, in lexicographic order
local REQUIRED = { RSA = { "e", "kty", "n" }, EC = { "crv", "kty", "x", "y" },
  OKP = { "crv", "kty", "x" }, oct = { "k", "kty" } }

--- The RFC 7638 thumbprint of a JWK table: base64url(SHA-256) of its
-- required members as JSON in lexicographic order, no whitespace.
-- @tparam table jwk the JWK (its required members: kty, and e and n, crv x
--   and y, crv and x, or k)
-- @return the thumbprint, or nil and an error with code "key"
-- @raise when jwk is not a table
function M.thumbprint(jwk)
  if type(jwk) ~= "table" then error("connkit.jwt.thumbprint: expects a JWK table", 2) end
  local names = REQUIRED[jwk.kty]
  if not names then return key_error("thumbprint: unsupported kty") end
  local parts = {}
  for i, name in ipairs(names) do
    local v = jwk[name]
    -- the values are base64url or names like "P-256": nothing to escape,
    -- so the JSON is written here exactly as RFC 7638 asks
    if type(v) ~= "string" or not v:find("^[%w%-_]+$") then
      return key_error("thumbprint: the JWK's " .. name .. " is missing or not base64url")
    end
    parts[i] = '"' .. name .. '":"' .. v .. '"'
  end
  return b64url_encode(core.sha256("{" .. concat(parts, ",") .. "}"))
end

--- The RFC 7638 thumbprint of this key's public JWK. Raises for a secret.
-- @treturn string the thumbprint (base64url)
function Key:thumbprint()
  return (M.thumbprint(self:public_jwk()))
end

-- sources already turned into key lists (a JWKS is converted once)
local converted = setmetatable({}, { __mode = "k" })

--- The candidate keys of `src`: a key object, a list of key objects, a JWK
-- Set (`{ keys = {...} }`) or one JWK table. Returns a list of entries
-- `{ key =, kid =, kty =, alg =, use = }`; a JWK that cannot be made into a
-- key gives an entry with `err` instead of `key` (it only matters if its kid
-- is the one asked for). A JWK Set table is converted once and remembered.
-- @param src a key object, a list of them, a JWK Set or a JWK table
-- @treturn table the list of entries
-- @raise when src is neither a key nor a table
function M.keyset(src)
  if M.is_key(src) then return { { key = src, kid = src.kid, kty = src.kty, alg = src.alg, use = src.use } } end
  if type(src) ~= "table" then error("connkit.jwt: keys must be a key, a list of keys or a JWK Set", 2) end
  local done = converted[src]
  if done then return done end
  local list = {}
  -- (a JWK Set comes from a server: a "keys" that is not a list is no keys)
  local items = src.kty ~= nil and { src } or src.keys or src
  if type(items) ~= "table" then items = {} end
  for _, item in ipairs(items) do
    if M.is_key(item) then
      list[#list + 1] = { key = item, kid = item.kid, kty = item.kty, alg = item.alg, use = item.use }
    elseif type(item) == "table" then
      local k, err = M.key { jwk = item }
      local str = function(v) return type(v) == "string" and v or nil end
      list[#list + 1] = { key = k, err = err, kid = str(item.kid), kty = str(item.kty),
        alg = str(item.alg), use = str(item.use) }
    end
  end
  converted[src] = list
  return list
end

--- The entries of a keyset list for which `pick(entry)` is true.
-- @tparam table list entries from keyset
-- @tparam function pick function(entry) -> boolean
-- @treturn table the entries picked, in order
function M.filter(list, pick)
  local out = {}
  for _, e in ipairs(list) do
    if pick(e) then out[#out + 1] = e end
  end
  return out
end

return M
