--- The signing key of a definition: a private key (PEM text from a template,
-- or a PEM file) or a shared secret, with its kid and alg. Used by JWT
-- client authentication (`oauth2.client_key`, connkit.auth.client_assertion)
-- and by the `jwt` block (connkit.auth.jwt_auth). The key is read and parsed
-- once per account and kept out of the account's fields; messages name the
-- definition field, never the key.
-- @module connkit.auth.signing_key
local check = require "connkit.check"
local errors = require "connkit.errors"
local jwt = require "connkit.auth.jwt"
local jwk = require "connkit.auth.jwk"

local M = {}

--- The algs a private key may sign with, by key type ("EC" is P-256 only).
M.PRIVATE_ALGS = { "RS256", "PS256", "ES256", "EdDSA" }

-- account -> spec -> { key =, alg = } (weak: goes with the account)
local cache = setmetatable({}, { __mode = "k" })

-- A template that holds key material: its placeholders must be parameters
-- declared `secret = true` (so they are scrubbed from every message and
-- never remembered by the connkit command).
local function secret_template(ctx, field, str, names)
  local tpl, used = check.template(ctx, field, str, "raw", names)
  for _, n in ipairs(used) do
    if names[n] and not names[n].secret then
      ctx.fail(field, ("uses {%s}, which is not declared secret = true (it holds key material)"):format(n))
    end
  end
  return tpl
end

--- Checks the key fields of a block. `f` maps the roles to the block's
-- field names ({ key =, key_file =, password =, kid =, alg =, secret = },
-- each optional), `prefix` is the block's name in messages ("oauth2").
-- `opts.required`: one of key / key_file / secret must be given;
-- `opts.secret_only`: only a shared secret (HS256) is allowed;
-- `opts.private_only`: only a private key (no HS256). Returns
-- { key =, key_file =, password =, kid = (templates), alg =, fields = }.
-- @tparam table ctx the check context
-- @tparam table b the block
-- @tparam string prefix the block's name
-- @tparam table f role -> field name
-- @tparam table names the parameter names
-- @tparam[opt] table opts required, secret_only, private_only
-- @treturn table the normalized key spec
-- @raise naming the field
function M.check_definition(ctx, b, prefix, f, names, opts)
  opts = opts or {}
  local function name(role) return prefix .. "." .. f[role] end
  local out = { fields = {} }
  for role, field in pairs(f) do out.fields[role] = prefix .. "." .. field end
  local given = {}
  for _, role in ipairs({ "key", "key_file", "secret" }) do
    if f[role] and b[f[role]] ~= nil then given[#given + 1] = role end
  end
  if #given > 1 then
    ctx.fail(name(given[2]), "cannot be given with " .. name(given[1]))
  end
  if opts.required and #given == 0 then
    ctx.fail(name("key"), "is required (or " .. name("key_file")
      .. (f.secret and (" or " .. name("secret")) or "") .. ")")
  end
  if f.key and b[f.key] ~= nil then
    check.string(ctx, name("key"), b[f.key])
    out.key = secret_template(ctx, name("key"), b[f.key], names)
  end
  if f.key_file and b[f.key_file] ~= nil then
    out.key_file = check.template(ctx, name("key_file"), check.string(ctx, name("key_file"), b[f.key_file]), "raw", names)
  end
  if f.secret and b[f.secret] ~= nil then
    check.string(ctx, name("secret"), b[f.secret])
    out.secret = secret_template(ctx, name("secret"), b[f.secret], names)
  end
  if f.password and b[f.password] ~= nil then
    check.string(ctx, name("password"), b[f.password])
    if out.secret then ctx.fail(name("password"), "goes with a private key, not " .. name("secret")) end
    out.password = secret_template(ctx, name("password"), b[f.password], names)
  end
  if f.kid and b[f.kid] ~= nil then
    out.kid = check.template(ctx, name("kid"), check.string(ctx, name("kid"), b[f.kid]), "raw", names)
  end
  if f.alg and b[f.alg] ~= nil then
    local algs = (opts.secret_only or out.secret) and { "HS256" }
      or ((opts.private_only or out.key or out.key_file) and M.PRIVATE_ALGS)
      or { "RS256", "PS256", "ES256", "EdDSA", "HS256" }
    out.alg = check.string(ctx, name("alg"), b[f.alg], { one_of = algs })
  end
  return out
end

local function fail(code, msg) return nil, errors.new(code, msg) end

-- The PEM text of a spec: the filled template, or the file's contents.
local function pem_text(acct, spec)
  if spec.pem then return spec.pem end
  if spec.key then
    local pem, err = acct:fill(spec.key)
    if not pem then return fail("template", spec.fields.key .. ": " .. err.message) end
    return pem
  end
  local path, err = acct:fill(spec.key_file)
  if not path then return fail("template", spec.fields.key_file .. ": " .. err.message) end
  local fh, oerr = io.open(path, "rb")
  if not fh then return fail("key", spec.fields.key_file .. ": cannot read the key file: " .. tostring(oerr)) end
  local text = fh:read("*a")
  fh:close()
  return text
end

-- The alg for a private key: the one asked for, which must fit the key,
-- else the key type's (RSA: RS256, EC P-256: ES256, Ed25519: EdDSA).
local function private_alg(spec, key)
  local kty = key.kty
  if kty == "EC" and key.crv ~= "P-256" then
    return fail("key", ("%s: an EC key on %s; only P-256 (ES256) is supported"):format(spec.fields.key or spec.fields.key_file, tostring(key.crv)))
  end
  if kty == "OKP" and key.crv ~= "Ed25519" then
    return fail("key", ("%s: an %s key; only Ed25519 (EdDSA) is supported"):format(spec.fields.key or spec.fields.key_file, tostring(key.crv)))
  end
  local alg = spec.alg
  if alg == nil then return jwk.DEFAULT_ALG[kty] end
  if jwk.ALG_KTY[alg] ~= kty then
    return fail("key", ("%s is %s, which does not fit the %s key of %s"):format(spec.fields.alg, alg, kty,
      spec.fields.key or spec.fields.key_file))
  end
  return alg
end

--- The key object and alg of `spec` for an account: parsed on first use
-- and kept (per account) after. `secret` is the shared secret to use when
-- the spec names no key (client_secret_jwt: the client secret). Returns
-- key, alg; or nil and an error (`key`: unreadable or unfit key, naming the
-- field; `template`).
-- @tparam connkit.account.Account acct the account
-- @tparam table spec the key spec (from M.check_definition)
-- @tparam[opt] string secret the shared secret when the spec names no key
-- @return[1] the key object
-- @treturn[1] string the alg
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.load(acct, spec, secret)
  local mine = cache[acct]
  if not mine then mine = {}; cache[acct] = mine end
  local hit = mine[spec]
  if hit and (hit.secret == nil or hit.secret == secret) then return hit.key, hit.alg end
  local key, alg
  if spec.pem or spec.key or spec.key_file then
    local pem, perr = pem_text(acct, spec)
    if not pem then return nil, perr end
    local password
    if spec.password then
      local p, err = acct:fill(spec.password)
      if not p then return fail("template", spec.fields.password .. ": " .. err.message) end
      password = p
    end
    local kerr
    key, kerr = jwt.key { pem = pem, password = password }
    if not key then
      return fail("key", (spec.fields.key or spec.fields.key_file) .. ": " .. errors.redact(kerr.message, { pem, password }))
    end
    if key.kind ~= "private" then
      return fail("key", (spec.fields.key or spec.fields.key_file) .. ": is a public key or certificate, not a private key")
    end
    local aerr
    alg, aerr = private_alg(spec, key)
    if not alg then return nil, aerr end
    mine[spec] = { key = key, alg = alg }
    return key, alg
  end
  if spec.secret then
    local s, err = acct:fill(spec.secret)
    if not s then return fail("template", spec.fields.secret .. ": " .. err.message) end
    secret = s
  end
  if type(secret) ~= "string" or secret == "" then
    return fail("config", "no shared secret to sign with (" .. (spec.fields.secret or "oauth2.client_secret") .. ")")
  end
  key = jwt.key { secret = secret }
  mine[spec] = { key = key, alg = "HS256", secret = secret }
  return key, "HS256"
end

--- The kid to put in the header, or nil: the filled template.
-- @tparam connkit.account.Account acct the account
-- @tparam table spec the key spec
-- @treturn[1] string|nil the kid
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "template")
function M.kid(acct, spec)
  if not spec.kid then return nil end
  local kid, err = acct:fill(spec.kid)
  if not kid then return nil, errors.new("template", spec.fields.kid .. ": " .. err.message) end
  return kid
end

return M
