--- JSON Web Tokens (RFC 7519) in the JWS compact form (RFC 7515): sign,
-- decode and verify. Algorithms RS256, PS256, ES256, EdDSA (Ed25519) and
-- HS256 (RFC 7518, RFC 8037); the arithmetic is OpenSSL's (csrc/jws.c),
-- keys are connkit.auth.jwk's. Pure functions: fetching a JWK Set is the
-- caller's business.
-- @module connkit.auth.jwt
local core = require "connkit.core"
local cjson = require "cjson.safe"
local errors = require "connkit.errors"
local json = require "connkit.json"
local jwk = require "connkit.auth.jwk"

local b64url_encode, b64url_decode = core.b64url_encode, core.b64url_decode
local format_number = core.format_number
local type, pairs, ipairs, tostring, error, os_time = type, pairs, ipairs, tostring, error, os.time

local ALG_KTY, DEFAULT_ALG = jwk.ALG_KTY, jwk.DEFAULT_ALG
local ASYMMETRIC = { "RS256", "PS256", "ES256", "EdDSA" }
local MAX_TOKEN = 256 * 1024

local M = {
  --- A key object from PEM text, a JWK or a secret (connkit.auth.jwk.key).
  -- @function key
  -- @tparam table spec `pem` (+ `password`), `jwk` or `secret`; `kid`, `alg`
  -- @return the key, or nil and an error with code "key"
  key = jwk.key,
  --- A new private key object (connkit.auth.jwk.generate).
  -- @function generate
  -- @tparam table spec `alg` ("ES256", "EdDSA", "RS256", "PS256"), `bits`,
  --   `kid`
  -- @return the key
  generate = jwk.generate,
  --- The candidate keys of a key, list of keys, JWK Set or JWK
  -- (connkit.auth.jwk.keyset).
  -- @function keyset
  -- @param src the keys
  -- @treturn table a list of entries `{ key =, kid =, kty =, alg =, use = }`
  keyset = jwk.keyset,
  --- The RFC 7638 thumbprint of a JWK table (connkit.auth.jwk.thumbprint).
  -- @function thumbprint
  -- @tparam table jwk the JWK
  -- @return the thumbprint, or nil and an error with code "key"
  thumbprint = jwk.thumbprint,
  --- True when v is a key object (connkit.auth.jwk.is_key).
  -- @function is_key
  -- @param v any value
  -- @treturn boolean
  is_key = jwk.is_key,
}

-- A value from a token, fit for a message: printable, at most 60 characters.
local function show(v)
  if type(v) ~= "string" then return tostring(v) end
  v = v:gsub("[%c\128-\255]", "?")
  if #v > 60 then v = v:sub(1, 57) .. "..." end
  return "'" .. v .. "'"
end

--- A compact JWS of `claims` signed with `key`.
-- `header_fields` (may be nil) go into the header as they are; `alg`
-- defaults to the key's alg, else to RS256/ES256/EdDSA/HS256 by key type;
-- `typ` defaults to "JWT" (`typ = false` leaves it out); `kid` defaults to
-- the key's kid (`kid = false` leaves it out). Claims are encoded with
-- connkit.json (numbers exactly as written).
-- @tparam table|nil header_fields header fields: alg, typ, kid, and any other
-- @tparam table claims the claims (iss, sub, aud, exp, ...)
-- @param key a private key or secret key object (jwt.key)
-- @treturn[1] string the token
-- @return[2] nil
-- @treturn[2] connkit.errors.Error code "key" (an alg that does not fit the
--   key, a public key)
-- @raise for a header or claims that are not tables, a key that is not a key
--   object, an unsupported alg, values JSON cannot hold
function M.sign(header_fields, claims, key)
  if header_fields ~= nil and type(header_fields) ~= "table" then
    error("connkit.jwt.sign: header fields must be a table or nil", 2)
  end
  if type(claims) ~= "table" then error("connkit.jwt.sign: claims must be a table", 2) end
  if not jwk.is_key(key) then error("connkit.jwt.sign: key must be a connkit.jwt.key", 2) end
  local header = {}
  for k, v in pairs(header_fields or {}) do header[k] = v end
  header.alg = header.alg or key.alg or DEFAULT_ALG[key.kty]
  if not ALG_KTY[header.alg] then error("connkit.jwt.sign: unsupported alg " .. tostring(header.alg), 2) end
  if header.typ == nil then header.typ = "JWT" elseif header.typ == false then header.typ = nil end
  if header.kid == nil then header.kid = key.kid elseif header.kid == false then header.kid = nil end
  if ALG_KTY[header.alg] ~= key.kty then
    return nil, errors.new("key", "jwt: alg " .. header.alg .. " does not fit this " .. key.kty .. " key")
  end
  local h, herr = json.encode(header)
  if not h then error("connkit.jwt.sign: header: " .. herr, 2) end
  local c, cerr = json.encode(claims)
  if not c then error("connkit.jwt.sign: claims: " .. cerr, 2) end
  local input = b64url_encode(h) .. "." .. b64url_encode(c)
  local sig, _, msg = core.jws_sign(header.alg, jwk.material(key), input)
  if not sig then return nil, errors.new("key", "jwt: " .. msg) end
  return input .. "." .. b64url_encode(sig)
end

local function json_part(text, what)
  local raw = b64url_decode(text)
  if not raw then return nil, "the " .. what .. " is not base64url" end
  local v = cjson.decode(raw)
  if type(v) ~= "table" or v[1] ~= nil then return nil, "the " .. what .. " is not a JSON object" end
  return v
end

--- The parts of a compact JWS, without verifying anything (to read its
-- header, such as the kid). Returns `{ header =, claims =, signing_input =,
-- signature = }` (signature as raw bytes), or nil and an error with code
-- `code` (default "id_token_invalid") saying what is malformed.
-- @tparam string token the compact JWS
-- @tparam[opt="id_token_invalid"] string code the code of the error
-- @treturn[1] table `{ header =, claims =, signing_input =, signature = }`
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (JWT malformed: why)
function M.decode(token, code)
  code = code or "id_token_invalid"
  local function bad(why) return nil, errors.new(code, "JWT malformed: " .. why) end
  if type(token) ~= "string" then return bad("not a string") end
  if #token > MAX_TOKEN then return bad("longer than " .. MAX_TOKEN .. " bytes") end
  local h, p, s = token:match("^([^.]*)%.([^.]*)%.([^.]*)$")
  if not h then
    local _, dots = token:gsub("%.", "")
    if dots == 4 then return bad("an encrypted JWT (JWE) is not supported") end
    return bad("not three base64url parts separated by dots")
  end
  local header, why = json_part(h, "header")
  if not header then return bad(why) end
  local claims
  claims, why = json_part(p, "payload")
  if not claims then return bad(why) end
  local sig = b64url_decode(s)
  if not sig then return bad("the signature is not base64url") end
  return { header = header, claims = claims, signing_input = h .. "." .. p, signature = sig }
end

-- The key that verifies a token: by kid when the header has one, else the
-- one key that fits the alg. Returns entry | nil, reason, unknown_kid.
local function select_key(keys, header, alg)
  local list = jwk.keyset(keys)
  if jwk.is_key(keys) then return list[1] end
  local kty = ALG_KTY[alg]
  local function fits(e)
    return (e.kty == nil or e.kty == kty) and (e.alg == nil or e.alg == alg)
      and (e.use == nil or e.use == "sig")
  end
  local kid = header.kid
  if kid ~= nil then
    if type(kid) ~= "string" then return nil, "the kid is not a string" end
    local with_kid = jwk.filter(list, function(e) return e.kid == kid end)
    if #with_kid == 0 then return nil, "no key with kid " .. show(kid), true end
    local usable = jwk.filter(with_kid, fits)
    if #usable == 0 then return nil, "the key with kid " .. show(kid) .. " is not for " .. alg end
    if #usable > 1 then return nil, "several keys have kid " .. show(kid) end
    return usable[1]
  end
  local usable = jwk.filter(list, fits)
  if #usable == 0 then return nil, "no key for " .. alg end
  if #usable > 1 then return nil, "the token names no kid and several keys fit " .. alg end
  return usable[1]
end

local function list_of(v)
  if type(v) == "table" then return v end
  return { v }
end

-- Checks the registered claims; nil or the reason they are refused.
local function check_claims(c, opts)
  local now, skew = opts.now or os_time(), opts.skew or 60
  for _, name in ipairs(opts.required or { "exp" }) do
    if c[name] == nil then return name .. " is missing" end
  end
  for _, name in ipairs { "exp", "nbf", "iat" } do
    if c[name] ~= nil and (type(c[name]) ~= "number" or c[name] ~= c[name]) then
      return name .. " is not a number"
    end
  end
  local function at(name) return " (" .. name .. " " .. format_number(c[name]) .. ", now " .. format_number(now) .. ")" end
  if c.exp and now - skew >= c.exp then return "expired" .. at("exp") end
  if c.nbf and now + skew < c.nbf then return "not valid yet" .. at("nbf") end
  if c.iat and now + skew < c.iat then return "issued in the future" .. at("iat") end
  if opts.iss ~= nil and c.iss ~= opts.iss then
    return "iss is " .. show(c.iss) .. ", expected " .. show(opts.iss)
  end
  if opts.aud ~= nil then
    if c.aud == nil then return "aud is missing" end
    local auds = list_of(c.aud)
    local found = false
    for _, want in ipairs(list_of(opts.aud)) do
      for _, a in ipairs(auds) do found = found or a == want end
    end
    if not found then return "aud " .. show(type(c.aud) == "string" and c.aud or "[...]") .. " does not include the expected audience" end
    local client_id = opts.client_id or (type(opts.aud) == "string" and opts.aud or nil)
    -- OpenID Connect Core 3.1.3.7: several audiences need azp, and azp
    -- (when present) is the client
    if #auds > 1 and c.azp == nil then return "several audiences and no azp" end
    if c.azp ~= nil and client_id ~= nil and c.azp ~= client_id then
      return "azp is " .. show(c.azp) .. ", expected " .. show(client_id)
    end
  end
  if opts.nonce ~= nil then
    if c.nonce == nil then return "nonce is missing" end
    if type(c.nonce) ~= "string" or not core.ct_equal(c.nonce, opts.nonce) then
      return "nonce does not match"
    end
  end
  return nil
end

--- Verifies a compact JWS and its claims.
-- opts: `keys` (a key object, a list of them, or a JWK Set table), `algs`
-- (allowed algs; default RS256, PS256, ES256, EdDSA; `none` is always
-- refused, and HS256 needs a secret key: with a public key it is refused),
-- `iss`, `aud` (string or list: the token's aud must include one),
-- `client_id` (the azp expected; default `aud` when a string), `nonce`,
-- `typ` (the header's typ, compared without case), `required` (claims
-- that must be present; default { "exp" }), `skew` (seconds, default 60),
-- `now` (default os.time()), `code` (the error code, default
-- "id_token_invalid"), `what` (the name in messages, default "JWT").
-- @return claims, header; or nil and an error with `code`, the reason in
-- its message, and `unknown_kid = true` when no key has the token's kid
-- (the caller may refetch the JWK Set once)
-- @tparam string token the compact JWS
-- @tparam table opts keys (required), algs, iss, aud, client_id, nonce, typ,
--   required, skew, now, code, what (above)
-- @treturn[1] table the claims
-- @treturn[1] table the header
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code `opts.code`)
-- @raise when opts.keys is missing or opts.algs is not a list
function M.verify(token, opts)
  if type(opts) ~= "table" or opts.keys == nil then error("connkit.jwt.verify: opts.keys is required", 2) end
  if opts.algs ~= nil and type(opts.algs) ~= "table" then error("connkit.jwt.verify: opts.algs must be a list", 2) end
  local code, what = opts.code or "id_token_invalid", opts.what or "JWT"
  local function refuse(reason, extra)
    return nil, errors.new(code, what .. " refused: " .. reason, extra)
  end
  local d, derr = M.decode(token, code)
  if not d then return nil, derr end
  local header, alg = d.header, d.header.alg
  if type(alg) ~= "string" then return refuse("the header has no alg") end
  if alg:lower() == "none" then return refuse("alg none (an unsigned token)") end
  if header.crit ~= nil then return refuse("the header has crit extensions, none of which are supported") end
  local allowed = false
  for _, a in ipairs(opts.algs or ASYMMETRIC) do allowed = allowed or a == alg end
  if not allowed or not ALG_KTY[alg] then return refuse("alg " .. show(alg) .. " is not allowed") end
  if opts.typ ~= nil then
    local typ = type(header.typ) == "string" and header.typ:lower():gsub("^application/", "") or nil
    if typ ~= opts.typ:lower() then return refuse("typ is " .. show(header.typ) .. ", expected " .. show(opts.typ)) end
  end
  local entry, why, unknown = select_key(opts.keys, header, alg)
  if not entry then return refuse(why, { unknown_kid = unknown or nil }) end
  if not entry.key then return refuse(entry.err.message) end
  local key = entry.key
  if alg == "HS256" and key.kind ~= "secret" then
    return refuse("HS256 with a public key (algorithm confusion)")
  end
  if ALG_KTY[alg] ~= key.kty then return refuse("alg " .. alg .. " does not fit the " .. key.kty .. " key") end
  if key.alg ~= nil and key.alg ~= alg then return refuse("alg " .. alg .. ", but the key is for " .. key.alg) end
  local ok, _, msg = core.jws_verify(alg, jwk.material(key), d.signing_input, d.signature)
  if ok == nil then return refuse(msg) end
  if not ok then return refuse("bad signature") end
  why = check_claims(d.claims, opts)
  if why then return refuse(why) end
  return d.claims, header
end

return M
