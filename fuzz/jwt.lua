-- Fuzz target: untrusted JWTs and JWKs (connkit.auth.jwt, connkit.auth.jwk,
-- csrc/jws.c). Byte 1 picks what the rest is:
--   0: a compact token, verified against a JWK Set of public keys (RSA, EC,
--      Ed25519: RFC 7517/8037 examples) and against an HS256 secret;
--   1: JSON of a JWK Set or a JWK, made into keys and thumbprints; or PEM
--      text (starting with "-"), read as a key with a password;
--   2: JSON claims, signed with HS256 and verified with options taken
--      from the claims themselves;
--   3: raw bytes for the C functions: ES256 signature forms, JWK public
--      parameters (kty and the split points from bytes 2-3).
-- Oracles: no Lua error escapes; a refusal has the documented code and no
-- secret in its message; nothing verifies under the public keys (no private
-- key exists here); what verifies under the secret carries its HMAC (checked
-- with core.hmac_sha256) and claims that pass the checks when redone here;
-- a JWK's key gives back the same public key through its public JWK; ES256
-- r || s -> DER -> r || s is the identity.
local core = require "connkit.core"
local cjson = require "cjson.safe"
local jwt = require "connkit.auth.jwt"
local jwk = require "connkit.auth.jwk"

local SECRET = "fuzz-HS256-secret-Zq8-xL2-padding"
local NOW = 1800000000

local JWKS = { keys = {
  { kty = "RSA", kid = "rsa", e = "AQAB",
    n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw" },
  { kty = "EC", kid = "ec", crv = "P-256",
    x = "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4", y = "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM" },
  { kty = "OKP", kid = "ed", crv = "Ed25519", x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" },
} }
for _, e in ipairs(jwt.keyset(JWKS)) do assert(e.key, "a fixed JWK does not load") end
local SECRET_KEY = jwt.key { secret = SECRET }
local ALL = { "RS256", "PS256", "ES256", "EdDSA", "HS256" }

-- The input being run. A refusal may quote a little of it (up to 20
-- characters of a JWK's kty), and the fuzzer learns the secret's bytes from
-- the comparisons it sees: when the input holds the secret's first 10
-- characters, only the whole secret in a message counts.
local input = ""

local function check_refusal(err, code)
  local part = SECRET:sub(1, 10)
  if input:find(part, 1, true) then part = SECRET end
  assert(type(err) == "table" and err.code == code, "refused with code " .. tostring(err and err.code))
  assert(type(err.message) == "string", "no message")
  assert(not err.message:find(part, 1, true), "the secret is in a message: " .. err.message)
end

local function token_case(token)
  local claims, err = jwt.verify(token, { keys = JWKS, algs = ALL, now = NOW })
  assert(claims == nil, "a token verified under public keys whose private keys do not exist here")
  check_refusal(err, "id_token_invalid")
  claims, err = jwt.verify(token, { keys = SECRET_KEY, algs = ALL, now = NOW, code = "fuzz_code" })
  if claims == nil then return check_refusal(err, "fuzz_code") end
  local h, p, s = token:match("^([^.]*)%.([^.]*)%.([^.]*)$")
  assert(core.b64url_decode(s) == core.hmac_sha256(SECRET, h .. "." .. p), "accepted without the right HMAC")
  assert(jwt.decode(token).header.alg == "HS256", "accepted under the secret with another alg")
end

-- PEM text (starting with "-"): a key or a "key" refusal, never a raise
local function pem_case(text)
  local k, err = jwt.key { pem = text, password = SECRET }
  if k == nil then return check_refusal(err, "key") end
  assert(jwt.key { pem = k:public_pem() }, "a key's own public PEM does not load")
  assert(not tostring(k):find(SECRET:sub(1, 10), 1, true))
end

local function jwk_case(text)
  if text:sub(1, 1) == "-" then return pem_case(text) end
  local t = cjson.decode(text)
  if type(t) ~= "table" then return end
  for _, e in ipairs(jwt.keyset(t)) do
    if e.key then
      local pub = e.key:public_jwk()
      local again = assert(jwt.key { jwk = pub }, "a key's own public JWK does not load")
      assert(again:public_pem() == e.key:public_pem(), "the public JWK is another key")
      assert(type(e.key:thumbprint()) == "string")
      tostring(e.key)
    else
      check_refusal(e.err, "key")
    end
  end
  local tp, err = jwt.thumbprint(t)
  if tp == nil then check_refusal(err, "key") else assert(#tp == 43, "a thumbprint is 43 characters") end
end

local function num(v) return type(v) == "number" and v == v end

local function claims_case(text)
  local c = cjson.decode(text)
  if type(c) ~= "table" then return end
  local ok, token, serr = pcall(jwt.sign, nil, c, SECRET_KEY)
  if not ok then return end -- claims that cannot be encoded (a deep nest) raise
  assert(token, "signing failed: " .. tostring(serr))
  local opts = { keys = SECRET_KEY, algs = { "HS256" }, now = NOW, required = {},
    iss = type(c.iss) == "string" and c.iss or nil,
    aud = type(c.azp) == "string" and c.azp or nil,
    nonce = type(c.jti) == "string" and c.jti or nil }
  local got, err = jwt.verify(token, opts)
  if got == nil then return check_refusal(err, "id_token_invalid") end
  -- accepted: redo the time checks and the audience rule here
  for _, name in ipairs { "exp", "nbf", "iat" } do
    assert(c[name] == nil or num(c[name]), name .. " accepted while not a number")
  end
  assert(c.exp == nil or NOW - 60 < c.exp, "expired but accepted")
  assert(c.nbf == nil or c.nbf <= NOW + 60, "not yet valid but accepted")
  assert(c.iat == nil or c.iat <= NOW + 60, "issued in the future but accepted")
  if opts.nonce then assert(c.nonce == opts.nonce, "wrong nonce accepted") end
  if opts.aud then
    local auds = type(c.aud) == "table" and c.aud or { c.aud }
    local found = false
    for _, a in ipairs(auds) do found = found or a == opts.aud end
    assert(found, "accepted without the audience")
    assert(#auds <= 1 or c.azp == opts.aud, "several audiences accepted without azp")
  end
end

local KTY = { "RSA", "EC", "OKP" }
local CRV = { RSA = nil, EC = "P-256", OKP = "Ed25519" }

local function raw_case(data)
  local raw = data:sub(1, 64)
  if #raw == 64 then
    local der = assert(core.ecdsa_raw_to_der(raw))
    assert(core.ecdsa_der_to_raw(der) == raw, "r || s -> DER -> r || s changed it")
  end
  local r = core.ecdsa_der_to_raw(data)
  assert(r == nil or #r == 64)
  if #data < 3 then return end
  local kty = KTY[data:byte(1) % 3 + 1]
  local cut = data:byte(2) * 4 + 3
  local a, b = data:sub(4, cut), data:sub(cut + 1)
  local pkey, code = core.pkey_from_jwk(kty, a, kty ~= "OKP" and b or nil, CRV[kty])
  if pkey == nil then return assert(code == "key", "pkey_from_jwk failed with " .. tostring(code)) end
  local k2, _, pa, pb = pkey:params()
  assert(k2 == kty, "another key type")
  if kty == "EC" or kty == "OKP" then assert(pa == a, "the key's x is not the JWK's") end
  if kty == "EC" then assert(pb == b, "the key's y is not the JWK's") end
  assert(core.jws_verify(({ RSA = "PS256", EC = "ES256", OKP = "EdDSA" })[kty], pkey, data, raw) ~= true,
    "a random signature verified")
end

return function(data)
  if #data < 1 then return end
  input = data
  local mode, rest = data:byte(1) % 4, data:sub(2)
  if mode == 0 then token_case(rest)
  elseif mode == 1 then jwk_case(rest)
  elseif mode == 2 then claims_case(rest)
  else raw_case(rest) end
end
