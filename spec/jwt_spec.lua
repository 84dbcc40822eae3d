-- connkit.auth.jwt and connkit.auth.jwk (csrc/jws.c): JWS signatures checked
-- against independent implementations (the openssl command and node's
-- crypto) in both directions, keys from PEM and JWK, RFC 7638 thumbprints,
-- and the verification policy: algs, key selection, claims.
local core = require "connkit.core"
local jwt = require "connkit.auth.jwt"
local helpers = require "helpers"

local q = helpers.shell_quote
local dir = helpers.tmpdir("jwt")
local NODE = q(helpers.root .. "/spec/support/jws_node.js")
local PASSWORD = "pw-Sekr3t-Opens-Key"
local SECRET = "hs256-shared-secret-of-32-bytes!!"

local sh = helpers.sh

local function path(name) return dir .. "/" .. name end
local function read(name) return assert(helpers.read_file(path(name))) end
local function write(name, data) helpers.write_file(path(name), data) end

-- keys made by the openssl command, in the forms users have them
sh("cd " .. q(dir) .. " && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem"
  .. " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.pem"
  .. " && openssl genpkey -algorithm ED25519 -out ed.pem"
  .. " && openssl genrsa -traditional -out rsa_trad.pem 2048"
  .. " && openssl ecparam -name prime256v1 -genkey -noout -out ec_trad.pem"
  .. " && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2.pem"
  .. " && openssl pkcs8 -topk8 -v2 aes-256-cbc -in ec.pem -passout pass:" .. PASSWORD .. " -out ec_enc.pem"
  .. " && openssl rsa -in rsa_trad.pem -traditional -aes256 -passout pass:" .. PASSWORD .. " -out rsa_trad_enc.pem"
  .. " && for k in rsa ec ed rsa_trad ec_trad rsa2; do openssl pkey -in $k.pem -pubout -out $k.pub || exit 1; done"
  .. " && openssl req -x509 -new -key ec.pem -subj /CN=jwt-spec -days 1 -out ec_cert.pem"
  .. " && printf %s " .. q(SECRET) .. " > secret.txt")

local KEYFILE = { RS256 = "rsa", PS256 = "rsa", ES256 = "ec", EdDSA = "ed" }
local ALGS = { "RS256", "PS256", "ES256", "EdDSA" }

local function key_of(alg)
  if alg == "HS256" then return jwt.key { secret = SECRET } end
  return assert(jwt.key { pem = read(KEYFILE[alg] .. ".pem") })
end
local function pub_of(alg)
  if alg == "HS256" then return jwt.key { secret = SECRET } end
  return assert(jwt.key { pem = read(KEYFILE[alg] .. ".pub") })
end

-- The openssl command's verdict on a raw signature of data.
local function openssl_verifies(alg, data, sig)
  write("data", data)
  if alg == "ES256" then sig = assert(core.ecdsa_raw_to_der(sig)) end
  write("sig", sig)
  local pub = path(KEYFILE[alg] .. ".pub")
  local cmd
  if alg == "EdDSA" then
    cmd = "openssl pkeyutl -verify -pubin -inkey " .. q(pub) .. " -rawin -in " .. q(path("data"))
      .. " -sigfile " .. q(path("sig"))
  else
    cmd = "openssl dgst -sha256 -verify " .. q(pub) .. " -signature " .. q(path("sig"))
      .. (alg == "PS256" and " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32" or "")
      .. " " .. q(path("data"))
  end
  local ok = helpers.run(cmd)
  return ok
end

-- A raw signature of data made by the openssl command (ES256: DER).
local function openssl_signs(alg, data)
  write("data", data)
  local key = path(KEYFILE[alg] .. ".pem")
  if alg == "EdDSA" then
    sh("openssl pkeyutl -sign -inkey " .. q(key) .. " -rawin -in " .. q(path("data")) .. " -out " .. q(path("sig")))
  else
    sh("openssl dgst -sha256 -sign " .. q(key) .. " -out " .. q(path("sig"))
      .. (alg == "PS256" and " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32" or "")
      .. " " .. q(path("data")))
  end
  return read("sig")
end

local function node(args)
  return sh("node " .. NODE .. " " .. args)
end

local b64 = core.b64url_encode
local function compact(header, claims, sig_of)
  local input = b64(require("cjson").encode(header)) .. "." .. b64(require("cjson").encode(claims))
  return input .. "." .. b64(sig_of(input)), input
end

local NOW = 1800000000
local function claims(extra)
  local c = { iss = "https://idp.example", aud = "client-1", sub = "u1", exp = NOW + 300, iat = NOW - 10 }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end
local function verify(token, keys, opts)
  opts = opts or {}
  opts.keys, opts.now = keys, opts.now or NOW
  opts.algs = opts.algs or { "RS256", "PS256", "ES256", "EdDSA", "HS256" }
  return jwt.verify(token, opts)
end

describe("jwt signatures against independent implementations", function()
  for _, alg in ipairs(ALGS) do
    it(alg .. ": connkit signs, the openssl command and node verify", function()
      local token = assert(jwt.sign({ alg = alg }, claims(), key_of(alg)))
      local h, p, s = token:match("^([^.]+)%.([^.]+)%.([^.]+)$")
      local sig = assert(core.b64url_decode(s))
      assert.is_true(openssl_verifies(alg, h .. "." .. p, sig))
      assert.is_false(openssl_verifies(alg, h .. "." .. p .. "x", sig))
      write("data", h .. "." .. p)
      assert.equal("ok", node("verify " .. alg .. " " .. q(path(KEYFILE[alg] .. ".pub")) .. " " .. q(path("data")) .. " " .. s))
      assert.equal(alg, jwt.decode(token).header.alg)
    end)

    it(alg .. ": the openssl command and node sign, connkit verifies", function()
      local token = compact({ alg = alg, typ = "JWT" }, claims(), function(input)
        local sig = openssl_signs(alg, input)
        if alg == "ES256" then sig = assert(core.ecdsa_der_to_raw(sig)) end
        return sig
      end)
      local got = assert(verify(token, pub_of(alg)))
      assert.equal("u1", got.sub)
      local token2, input = compact({ alg = alg }, claims(), function() return "" end)
      write("data", input)
      token2 = token2 .. node("sign " .. alg .. " " .. q(path(KEYFILE[alg] .. ".pem")) .. " " .. q(path("data")))
      assert(verify(token2, pub_of(alg)))
    end)
  end

  it("HS256: connkit's MAC is node's, and connkit verifies node's", function()
    local token = assert(jwt.sign({ alg = "HS256" }, claims(), key_of("HS256")))
    local h, p, s = token:match("^([^.]+)%.([^.]+)%.([^.]+)$")
    write("data", h .. "." .. p)
    assert.equal(s, node("sign HS256 " .. q(path("secret.txt")) .. " " .. q(path("data"))))
    local mac = sh("openssl dgst -sha256 -mac HMAC -macopt key:" .. q(SECRET) .. " -binary "
      .. q(path("data")) .. " | od -An -tx1 | tr -d ' \\n'")
    assert.equal(mac, core.hex(core.b64url_decode(s)))
    assert(verify(token, key_of("HS256")))
    assert.equal("ok", node("verify HS256 " .. q(path("secret.txt")) .. " " .. q(path("data")) .. " " .. s))
  end)

  it("ES256: r || s and DER convert both ways exactly, leading zeros included", function()
    local pub = pub_of("ES256")
    for i = 1, 24 do
      local der = openssl_signs("ES256", "message " .. i)
      local raw = assert(core.ecdsa_der_to_raw(der))
      assert.equal(64, #raw)
      assert.equal(der, core.ecdsa_raw_to_der(raw)) -- DER is canonical
      write("data", "message " .. i)
      assert.equal("ok", node("verify ES256 " .. q(path("ec.pub")) .. " " .. q(path("data")) .. " " .. b64(raw)))
      assert.is_true(core.jws_verify("ES256", require("connkit.auth.jwk").material(pub), "message " .. i, raw))
    end
    -- short r and s are left-padded to 32 bytes each (r = 1, s = 2)
    local short_der = "\48\6\2\1\1\2\1\2"
    local short_raw = ("\0"):rep(31) .. "\1" .. ("\0"):rep(31) .. "\2"
    assert.equal(short_raw, core.ecdsa_der_to_raw(short_der))
    assert.equal(short_der, core.ecdsa_raw_to_der(short_raw))
    assert.is_nil(core.ecdsa_der_to_raw(short_der .. "\0")) -- trailing bytes
    assert.is_nil(core.ecdsa_der_to_raw("\48\3\2\1\1"))
    assert.is_nil(core.ecdsa_raw_to_der(("x"):rep(63)))
  end)

  it("traditional RSA and EC PEM keys sign, and a certificate's key verifies", function()
    for _, f in ipairs { "rsa_trad", "ec_trad" } do
      local k = assert(jwt.key { pem = read(f .. ".pem") })
      assert.equal("private", k.kind)
      local token = assert(jwt.sign(nil, claims(), k))
      assert(verify(token, assert(jwt.key { pem = read(f .. ".pub") })))
    end
    local cert = assert(jwt.key { pem = read("ec_cert.pem") })
    assert.equal("public", cert.kind)
    assert(verify(assert(jwt.sign(nil, claims(), key_of("ES256"))), cert))
  end)
end)

describe("jwt keys", function()
  it("a JWK gives the same public key as the PEM (checked with openssl and node)", function()
    for _, f in ipairs { "rsa", "ec", "ed" } do
      local priv = assert(jwt.key { pem = read(f .. ".pem") })
      local jwk = priv:public_jwk()
      -- node reads the PEM on its own and must find the same JWK
      local theirs = require("cjson").decode(node("jwk " .. q(path(f .. ".pub"))))
      assert.same(theirs, jwk)
      local pub = assert(jwt.key { jwk = jwk })
      assert.equal("public", pub.kind)
      assert.equal(read(f .. ".pub"), pub:public_pem())
      write("jwk.json", require("cjson").encode(jwk))
      assert.equal(read(f .. ".pub"), node("pem " .. q(path("jwk.json"))))
    end
  end)

  it("refuses JWKs that are not keys, naming the member", function()
    local ec = assert(jwt.key { pem = read("ec.pem") }):public_jwk()
    local function refused(jwk, pattern)
      local k, err = jwt.key { jwk = jwk }
      assert.is_nil(k)
      assert.equal("key", err.code)
      assert.matches(pattern, err.message)
    end
    refused({ kty = "EC", crv = "P-256", x = ec.x }, "no y")
    refused({ kty = "EC", crv = "P-256", x = ec.x, y = ec.x }, "not a valid public key") -- off the curve
    refused({ kty = "EC", crv = "P-384", x = ec.x, y = ec.y }, "P%-256")
    refused({ kty = "RSA", n = "a+b", e = "AQAB" }, "n is not base64url")
    local rsa = assert(jwt.key { pem = read("rsa.pem") }):public_jwk()
    local n = core.b64url_decode(rsa.n)
    refused({ kty = "RSA", n = b64(n:sub(1, -2) .. "\2"), e = "AQAB" }, "not a valid public key") -- even modulus
    refused({ kty = "RSA", n = rsa.n, e = "AAE" }, "not a valid public key") -- even e
    refused({ kty = "RSA", n = rsa.n, e = "AQ" }, "not a valid public key") -- e = 1
    refused({ kty = "oct", k = "c2VjcmV0" }, "unsupported JWK kty")
    refused({ kty = "EC", crv = "P-256", x = ec.x, y = ec.y, alg = "ES384" }, "alg ES384 is not supported")
    refused({ kty = "OKP", crv = "Ed25519", x = b64(("\1"):rep(31)) }, "32%-byte")
  end)

  it("an RSA JWK loads every time or never (OpenSSL's check of n is random)", function()
    -- n = 757 * r, r prime, gcd(756, n - 1) = 378: OpenSSL's SP 800-56B
    -- check (Miller-Rabin with random bases) refused it about half the time
    local n = "ApapvAqAFTrq9DYPeiZPEiannw4stSL6Qc5rLr-jfR43LtUMExD8jlXy36Qr"
      .. "WNeJ1gOhMquj0reVaKEOwFOLqv_VZ8c-fX_sjw42pYP2Z3GCvaY10TvGco_5IqQ-PeBewx"
      .. "ONjphTTzevzKWMfEA8bfgPTn-9gecsKvENnevPhmR-sAvS7pstWMN5DzKXyloZs0iVRprm"
      .. "swAyVPpX8e7Tuzz-a_sSNiLTfjtjIAEX5TNEbBcFaxM-XXxcGgqBn_YpVEekcw2phJNUpB"
      .. "m-mu1mUpLa4XU1zXO1a0O_WX18o4-e7816RjbBiA2euA0DZi0qzWHgJjOzmatFdm47EqNd0us"
    for _ = 1, 40 do
      local k, err = jwt.key { jwk = { kty = "RSA", n = n, e = "AQAB" } }
      assert.is_table(k, err and err.message)
      assert.equal(n, k:public_jwk().n)
    end
  end)

  it("RFC 7638 3.1: the thumbprint of the example key", function()
    local jwk = {
      kty = "RSA", e = "AQAB", alg = "RS256", kid = "2011-04-29",
      n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    }
    assert.equal("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", jwt.thumbprint(jwk))
    local k = assert(jwt.key { jwk = jwk })
    assert.equal("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", k:thumbprint())
    assert.equal("2011-04-29", k.kid)
    assert.equal("RS256", k.alg)
  end)

  it("encrypted PEM keys open with the right password only", function()
    for _, f in ipairs { "ec_enc", "rsa_trad_enc" } do
      local k = assert(jwt.key { pem = read(f .. ".pem"), password = PASSWORD })
      assert.equal("private", k.kind)
      assert(jwt.sign(nil, claims(), k))
      local none, err = jwt.key { pem = read(f .. ".pem") }
      assert.is_nil(none)
      assert.equal("key", err.code)
      assert.matches("encrypted and no password", err.message)
      none, err = jwt.key { pem = read(f .. ".pem"), password = "wrong-" .. PASSWORD }
      assert.is_nil(none)
      assert.equal("key", err.code)
      assert.matches("wrong password", err.message)
      assert.is_nil(err.message:find("Sekr3t", 1, true))
    end
  end)

  it("never shows key material: tostring, fields and errors", function()
    local pems = {}
    for _, f in ipairs { "rsa", "ec", "ed", "ec_enc" } do pems[#pems + 1] = read(f .. ".pem") end
    local texts = {}
    local function add(v) texts[#texts + 1] = tostring(v) end
    for _, pem in ipairs(pems) do
      local k = jwt.key { pem = pem, password = PASSWORD }
      add(k)
      for name, v in pairs(k) do add(name); add(v) end
      -- a damaged key: the message must not quote it
      local _, err = jwt.key { pem = pem:sub(1, 200) .. "!" .. pem:sub(202), password = PASSWORD }
      add(err)
    end
    local s = jwt.key { secret = SECRET }
    add(s)
    for name, v in pairs(s) do add(name); add(v) end
    local _, err = jwt.verify(assert(jwt.sign(nil, claims(), s)), { keys = s, now = NOW, algs = { "HS256" }, aud = "x" })
    add(err)
    local _, err2 = jwt.key { pem = "-----BEGIN PRIVATE KEY-----\n" .. SECRET .. "\n-----END PRIVATE KEY-----\n" }
    add(err2)
    local all = table.concat(texts, "\n")
    assert.is_nil(all:find(SECRET:sub(1, 12), 1, true))
    assert.is_nil(all:find(PASSWORD:sub(1, 10), 1, true))
    for _, pem in ipairs(pems) do
      local body = pem:gsub("%-%-%-%-%-[^\n]*%-%-%-%-%-", ""):gsub("%s", "")
      for i = 1, #body - 12, 12 do
        assert.is_nil(all:find(body:sub(i, i + 11), 1, true), "key bytes in: " .. all)
      end
    end
    assert.matches("connkit.jwt.key %(oct secret%)", tostring(s))
  end)

  it("generates keys whose private PEM reads back and the openssl command accepts", function()
    for _, alg in ipairs(ALGS) do
      local k = jwt.generate { alg = alg, kid = "gen" }
      assert.equal("private", k.kind)
      assert.equal("gen", k.kid)
      local pem = k:private_pem()
      write("gen.pem", pem)
      -- the openssl command reads the private key and derives the same public key
      assert.equal(k:public_pem(), sh("openssl pkey -in " .. q(path("gen.pem")) .. " -pubout"))
      local again = assert(jwt.key { pem = pem })
      local token = assert(jwt.sign(nil, claims(), k))
      assert.equal(alg, jwt.decode(token).header.alg)
      assert(verify(token, assert(jwt.key { jwk = again:public_jwk() })))
      assert.is_nil(tostring(k):find("PRIVATE", 1, true))
    end
    assert.not_equal(jwt.generate { alg = "ES256" }:thumbprint(), jwt.generate { alg = "ES256" }:thumbprint())
    assert.has_error(function() pub_of("ES256"):private_pem() end,
      "connkit.jwt.key: only a private key has a private PEM")
    assert.has_error(function() jwt.generate { alg = "HS256" } end,
      "connkit.jwt.generate: alg must be RS256, PS256, ES256 or EdDSA")
  end)

  it("refuses a PEM that is not a key, and an alg that does not fit", function()
    local k, err = jwt.key { pem = "not a key" }
    assert.is_nil(k)
    assert.equal("key", err.code)
    assert.matches("not a PEM private key", err.message)
    k, err = jwt.key { pem = read("ec.pem"), alg = "RS256" }
    assert.is_nil(k)
    assert.matches("RS256 does not fit this EC key", err.message)
    local tok
    tok, err = jwt.sign({ alg = "PS256" }, claims(), key_of("ES256"))
    assert.is_nil(tok)
    assert.equal("key", err.code)
    tok, err = jwt.sign(nil, claims(), pub_of("ES256"))
    assert.is_nil(tok)
    assert.matches("public key cannot sign", err.message)
    assert.has_error(function() jwt.key { pem = read("ec.pem"), secret = "x" } end,
      "connkit.jwt.key: give exactly one of pem, jwk or secret")
  end)
end)

describe("jwt verification policy", function()
  local es = key_of("ES256")
  local pub = pub_of("ES256")
  -- (the last block of the file: the keys' directory goes with it)
  teardown(function() helpers.execute("rm -rf " .. q(dir)) end)

  local function refused(token, keys, opts, pattern)
    local c, err = verify(token, keys, opts)
    assert.is_nil(c)
    assert.equal((opts and opts.code) or "id_token_invalid", err.code)
    assert.matches(pattern, err.message)
    return err
  end

  it("refuses a tampered payload or signature", function()
    for _, alg in ipairs { "RS256", "PS256", "ES256", "EdDSA", "HS256" } do
      local token = assert(jwt.sign({ alg = alg }, claims(), key_of(alg)))
      local h, p, s = token:match("^([^.]+)%.([^.]+)%.([^.]+)$")
      local forged = b64(require("cjson").encode(claims { sub = "admin" }))
      refused(h .. "." .. forged .. "." .. s, pub_of(alg), nil, "bad signature")
      local raw = core.b64url_decode(s)
      local flipped = raw:sub(1, 10) .. string.char((raw:byte(11) + 1) % 256) .. raw:sub(12)
      refused(h .. "." .. p .. "." .. b64(flipped), pub_of(alg), nil, "bad signature")
      refused(h .. "." .. p .. "." .. b64(raw:sub(1, -2)), pub_of(alg), nil, "bad signature")
      assert(verify(token, pub_of(alg)))
    end
  end)

  it("refuses alg none even when allowed, and unknown or disallowed algs", function()
    local good = assert(jwt.sign(nil, claims(), es))
    local _, p = good:match("^([^.]+)%.([^.]+)")
    for _, none in ipairs { "none", "None", "NONE" } do
      refused(b64('{"alg":"' .. none .. '"}') .. "." .. p .. ".", pub, { algs = { "none", "ES256" } }, "alg none")
    end
    refused(b64('{"alg":"ES512"}') .. "." .. p .. ".", pub, { algs = { "ES512" } }, "not allowed")
    -- the default algs are the asymmetric ones
    local hs = assert(jwt.sign(nil, claims(), key_of("HS256")))
    local _, err = jwt.verify(hs, { keys = key_of("HS256"), now = NOW })
    assert.matches("alg 'HS256' is not allowed", err.message)
    refused(b64('{"alg":"ES256","crit":["exp"]}') .. "." .. p .. "." .. good:match("[^.]+$"), pub, nil, "crit")
  end)

  it("refuses HS256 keyed with an RSA public key (algorithm confusion)", function()
    local pem = read("rsa.pub")
    local token = compact({ alg = "HS256", typ = "JWT" }, claims(), function(input)
      return core.hmac_sha256(pem, input)
    end)
    refused(token, pub_of("RS256"), { algs = { "RS256", "HS256" } }, "HS256 with a public key %(algorithm confusion%)")
    local jwks = { keys = { pub_of("RS256"):public_jwk() } }
    refused(token, jwks, { algs = { "RS256", "HS256" } }, "no key for HS256")
    -- a key that names its alg is used with that alg only
    local ps_only = assert(jwt.key { pem = read("rsa.pub"), alg = "PS256" })
    refused(assert(jwt.sign({ alg = "RS256" }, claims(), key_of("RS256"))), ps_only, nil, "the key is for PS256")
  end)

  it("checks exp, nbf and iat with the skew", function()
    local function at(c, opts) return verify(assert(jwt.sign(nil, c, es)), pub, opts) end
    assert(at(claims { exp = NOW - 30 }))             -- within the 60 s skew
    local err = refused(assert(jwt.sign(nil, claims { exp = NOW - 61 }, es)), pub, nil, "expired")
    assert.matches("exp 1799999939, now 1800000000", err.message)
    refused(assert(jwt.sign(nil, claims { exp = NOW - 5 }, es)), pub, { skew = 0 }, "expired")
    assert(at(claims { nbf = NOW + 30 }))
    refused(assert(jwt.sign(nil, claims { nbf = NOW + 120 }, es)), pub, nil, "not valid yet")
    refused(assert(jwt.sign(nil, claims { iat = NOW + 120 }, es)), pub, nil, "issued in the future")
    refused(assert(jwt.sign(nil, claims { exp = "soon" }, es)), pub, nil, "exp is not a number")
    local c = claims(); c.exp = nil
    refused(assert(jwt.sign(nil, c, es)), pub, nil, "exp is missing")
    refused(assert(jwt.sign(nil, claims(), es)), pub, { required = { "exp", "nonce" } }, "nonce is missing")
  end)

  it("checks iss, aud, azp and nonce, each with its reason", function()
    local function tok(extra) return assert(jwt.sign(nil, claims(extra), es)) end
    assert(verify(tok(), pub, { iss = "https://idp.example", aud = "client-1" }))
    refused(tok(), pub, { iss = "https://other.example" }, "iss is 'https://idp.example', expected 'https://other.example'")
    refused(tok(), pub, { aud = "client-2" }, "aud 'client%-1' does not include the expected audience")
    local noaud = claims(); noaud.aud = nil
    refused(assert(jwt.sign(nil, noaud, es)), pub, { aud = "client-1" }, "aud is missing")
    assert(verify(tok { aud = "x" }, pub, { aud = { "client-1", "x" } }))
    refused(tok { aud = { "api", "client-1" } }, pub, { aud = "client-1" }, "several audiences and no azp")
    assert(verify(tok { aud = { "api", "client-1" }, azp = "client-1" }, pub, { aud = "client-1" }))
    refused(tok { aud = { "api", "client-1" }, azp = "api" }, pub, { aud = "client-1" }, "azp is 'api', expected 'client%-1'")
    assert(verify(tok { nonce = "n-123" }, pub, { nonce = "n-123" }))
    refused(tok { nonce = "n-124" }, pub, { nonce = "n-123" }, "nonce does not match")
    refused(tok(), pub, { nonce = "n-123" }, "nonce is missing")
    refused(tok(), pub, { code = "invalid_assertion", what = "assertion", iss = "x" }, "^assertion refused: iss") -- a code of the caller's
    assert(verify(tok(), pub, { typ = "jwt" }))
    refused(tok(), pub, { typ = "dpop+jwt" }, "typ is 'JWT', expected 'dpop%+jwt'")
  end)

  it("picks the key by kid from a JWK Set (rotation), else the one that fits", function()
    local k1 = assert(jwt.key { pem = read("rsa.pem"), kid = "k1" })
    local k2 = assert(jwt.key { pem = read("rsa2.pem"), kid = "k2" })
    local function entry(k, kid) local j = k:public_jwk(); j.kid = kid; j.use = "sig"; return j end
    local jwks = { keys = { entry(k1, "k1"), entry(k2, "k2"), { kty = "EC", kid = "broken" } } }
    assert.equal("u1", assert(verify(assert(jwt.sign(nil, claims(), k2)), jwks)).sub)
    assert(verify(assert(jwt.sign(nil, claims(), k1)), jwks))
    -- a kid nobody has: the caller may refetch the set
    local k3 = assert(jwt.key { pem = read("rsa.pem"), kid = "k3" })
    local err = refused(assert(jwt.sign(nil, claims(), k3)), jwks, nil, "no key with kid 'k3'")
    assert.is_true(err.unknown_kid)
    -- signed by k1 but naming k2: the signature does not verify
    refused(assert(jwt.sign({ kid = "k2" }, claims(), k1)), jwks, nil, "bad signature")
    -- no kid: only when a single key fits
    local nokid = assert(jwt.sign({ kid = false }, claims(), k1))
    refused(nokid, jwks, nil, "several keys fit RS256")
    assert(verify(nokid, { keys = { entry(k1, "k1"), pub:public_jwk() } }))
    refused(assert(jwt.sign({ kid = "broken" }, claims(), es)), jwks, nil, "the JWK has no x")
    -- a key for encryption is not used to verify
    local enc = entry(k1, "k1"); enc.use = "enc"
    refused(assert(jwt.sign(nil, claims(), k1)), { keys = { enc } }, nil, "is not for RS256")
  end)

  it("decode reads the header without verifying; malformed tokens are refused", function()
    local token = assert(jwt.sign({ kid = "abc", typ = "dpop+jwt" }, claims(), es))
    local d = assert(jwt.decode(token))
    assert.equal("abc", d.header.kid)
    assert.equal("dpop+jwt", d.header.typ)
    assert.equal("u1", d.claims.sub)
    local _, err = jwt.decode("a.b.c.d.e")
    assert.matches("JWE", err.message)
    _, err = jwt.decode("abc", "invalid_token")
    assert.equal("invalid_token", err.code)
    _, err = jwt.decode(b64("[1]") .. "." .. b64("{}") .. ".")
    assert.matches("header is not a JSON object", err.message)
    _, err = jwt.decode(b64("{}") .. ".e30*.")
    assert.matches("payload is not base64url", err.message)
  end)

  it("claims keep big whole numbers exact", function()
    local token = assert(jwt.sign(nil, claims { id = 123456789012345 }, es))
    assert.matches('"id":123456789012345', core.b64url_decode(token:match("%.([^.]+)%.")), 1, true)
  end)
end)
