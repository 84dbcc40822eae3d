--- OpenID Connect relying party (OpenID Connect Core 1.0): the `nonce` of
-- an authorization request with `openid` in its scope, and the validation
-- of the `id_token` a token reply carries, before the tokens are accepted:
-- its signature against the issuer's JWK Set (fetched from `jwks_uri`,
-- kept per Lua state like the issuer's metadata, fetched again once when a
-- token names a kid it lacks), its alg, `iss`, `aud`/`azp`, `exp`/`iat` and
-- `nonce` (3.1.3.7), `at_hash` when present (3.1.3.8; not for EdDSA),
-- and on a refresh the same `iss`/`sub`/`aud`/`azp` as
-- the first one (12.2). The verified claims are kept in the token record
-- (field `id_token_claims`, so a shared store shares them); the id_token
-- itself is not kept.
-- @module connkit.auth.oidc
local core = require "connkit.core"
local check = require "connkit.check"
local errors = require "connkit.errors"
local endpoint = require "connkit.auth.token_endpoint"
local discovery = require "connkit.auth.discovery"
local jwt = require "connkit.auth.jwt"
local urls = require "connkit.http.url"
local cjson = require "cjson.safe"

local M = {}

--- The algs an id_token may be signed with (asymmetric only: `none` and
-- HS256 are never accepted).
M.ALGS = { "RS256", "PS256", "ES256", "EdDSA" }

--- Seconds of clock skew allowed on `exp` and `iat`.
M.SKEW = 60

-- Per Lua state: jwks_uri -> { jwks, expires }.
local cache = {}

--- Forgets every cached JWK Set.
function M.flush()
  cache = {}
end

--- Checks the OpenID Connect fields of an `oauth2` block into `out`:
-- `jwks_uri` (an endpoint URL, else from the issuer's metadata) and
-- `id_token_signed_response_alg` (one of M.ALGS: the only alg accepted).
-- @tparam table b the `oauth2` block as given
-- @tparam table out the normalized block, completed here
-- @tparam table env the check environment (ctx, secure_url; see
--   connkit.auth.oauth2.check_definition)
-- @raise naming the field
function M.check_definition(b, out, env)
  if b.jwks_uri ~= nil then out.jwks_uri = env.secure_url("oauth2.jwks_uri", b.jwks_uri) end
  out.id_token_signed_response_alg = check.string(env.ctx, "oauth2.id_token_signed_response_alg",
    b.id_token_signed_response_alg, { one_of = M.ALGS })
end

-- True when the space-separated scope holds "openid".
local function has_openid(scope)
  return type(scope) == "string" and (" " .. scope .. " "):find("%sopenid%s") ~= nil
end

-- OpenID Connect needs the issuer: without oauth2.issuer an id_token is
-- neither asked for with a nonce nor validated (plain OAuth 2.0).
local function enabled(acct)
  local o = acct.integration.oauth2
  return o ~= nil and o.issuer ~= nil
end

--- Adds a random `nonce` to the authorization request `q` (a table of
-- query values, the caller's own `params` already in it: a nonce given
-- there is the one checked) when its scope holds `openid` and the
-- definition has an issuer, and remembers it in `pending`. The jwks_uri is
-- resolved now, so a definition that cannot validate an id_token fails
-- before the user is sent anywhere. Returns true, or nil and an error.
-- @tparam connkit.account.Account acct the account
-- @tparam table q the authorization request's query values
-- @tparam table pending what finish_authorization will check
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (discovery)
function M.authorization_request(acct, q, pending)
  if not (enabled(acct) and has_openid(q.scope)) then return true end
  local url, err = discovery.url(acct, "jwks_uri")
  if not url then return nil, err end
  if q.nonce == nil then q.nonce = core.b64url_encode(core.random(24)) end
  pending.nonce = q.nonce
  return true
end

local function refuse(why)
  return nil, errors.new("id_token_invalid", "id_token refused: " .. why)
end

-- One GET of the JWK Set: the document and its freshness, or nil, err.
local function fetch_jwks(acct, url)
  local res, code, msg = endpoint.transfer {
    method = "GET", url = url, header_lines = { "Accept: application/json, application/jwk-set+json" },
    timeout = acct._timeout, connect_timeout = acct._connect_timeout, ca_file = acct._ca_file,
  }
  local where = "the issuer's JWK Set " .. urls.safe_url(url)
  if not res then return nil, errors.new(code, acct:_redact(("%s: %s"):format(where, msg))) end
  local doc = res.status == 200 and cjson.decode(res.body)
  if type(doc) ~= "table" or type(doc.keys) ~= "table" then
    return refuse(("%s answered %d%s: the id_token cannot be verified"):format(where, res.status,
      res.status == 200 and " with something that is not a JWK Set" or ""))
  end
  return doc, discovery.freshness(res.headers)
end

-- The JWK Set at `url`: from the cache unless `fresh`; returns the set and
-- whether it came from the cache, or nil, err.
local function jwks(acct, url, fresh)
  local now = core.now()
  local entry = cache[url]
  if not fresh and entry and now < entry.expires then return entry.jwks, true end
  cache[url] = nil
  local doc, ttl = fetch_jwks(acct, url)
  if not doc then return nil, ttl end
  if ttl then cache[url] = { jwks = doc, expires = now + ttl } end
  return doc, false
end

-- The algs accepted: M.ALGS, narrowed by id_token_signed_response_alg and
-- by the metadata's id_token_signing_alg_values_supported.
local function algs(acct, meta)
  local o = acct.integration.oauth2
  local out = {}
  for _, a in ipairs(M.ALGS) do
    if (o.id_token_signed_response_alg == nil or o.id_token_signed_response_alg == a)
        and discovery.supports(meta or nil, "id_token_signing_alg_values_supported", a) ~= false then
      out[#out + 1] = a
    end
  end
  return out
end

-- A copy of decoded JSON with cjson.null left out (so a store can hold it).
local function plain(v)
  if v == cjson.null then return nil end
  if type(v) ~= "table" then return v end
  local out = {}
  if v[1] ~= nil then
    for _, x in ipairs(v) do
      local y = plain(x)
      if y ~= nil then out[#out + 1] = y end
    end
    return out
  end
  for k, x in pairs(v) do out[k] = plain(x) end
  return out
end

local function aud_key(aud)
  local list = type(aud) == "table" and aud or { aud }
  local copy = {}
  for i, a in ipairs(list) do copy[i] = tostring(a) end
  table.sort(copy)
  return table.concat(copy, "\n")
end

-- OpenID Connect Core 12.2: an id_token of a refresh reply is about the
-- same authentication as the first one.
local function same_authentication(first, c)
  for _, name in ipairs({ "iss", "sub", "azp", "auth_time" }) do
    if first[name] ~= c[name] and not (name == "auth_time" and (first[name] == nil or c[name] == nil)) then
      return name .. " differs from the first id_token's"
    end
  end
  if aud_key(first.aud) ~= aud_key(c.aud) then return "aud differs from the first id_token's" end
end

--- Validates `id_token` for the account: `expect.nonce` (the nonce sent,
-- or nil) and `expect.first` (the claims of the first id_token, on a
-- refresh). Returns the verified claims (without JSON nulls), or nil and
-- an error (`id_token_invalid` with the reason; `config` when no jwks_uri
-- is known; a transport code when the JWK Set could not be fetched).
-- @tparam connkit.account.Account acct the account
-- @tparam string id_token the compact JWS
-- @tparam table expect `nonce`, `first`
-- @treturn[1] table the claims
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.validate(acct, id_token, expect)
  local o = acct.integration.oauth2
  acct:_add_secret(id_token)
  local issuer, ierr = acct:fill(o.issuer)
  if not issuer then return nil, ierr end
  local url, uerr = discovery.url(acct, "jwks_uri")
  if not url then return nil, uerr end
  local meta = discovery.metadata(acct)
  local client_id = endpoint.client(acct)
  if client_id == nil then return nil, errors.new("config", "oauth2: no client_id to check the id_token's aud against") end
  local allowed = algs(acct, meta)
  if #allowed == 0 then return refuse("no alg both connkit and the issuer's metadata accept") end
  local keys, cached = jwks(acct, url)
  if not keys then return nil, cached end
  local opts = {
    keys = keys, algs = allowed, iss = issuer, aud = client_id, client_id = client_id,
    nonce = expect.nonce, skew = M.SKEW, required = { "iss", "sub", "aud", "exp", "iat" },
    what = "id_token",
  }
  local claims, err = jwt.verify(id_token, opts)
  if not claims and err.unknown_kid and cached then
    -- key rotation: the issuer may have published the key since (once)
    opts.keys, err = jwks(acct, url, true)
    if not opts.keys then return nil, err end
    claims, err = jwt.verify(id_token, opts)
  end
  if not claims then return nil, err end
  if type(claims.sub) ~= "string" or claims.sub == "" then return refuse("sub is not a non-empty string") end
  claims = plain(claims)
  if expect.first then
    local why = same_authentication(expect.first, claims)
    if why then return refuse(why .. " (OpenID Connect Core 12.2)") end
  end
  return claims
end

-- The algs whose at_hash connkit checks, by their hash. (EdDSA's is left
-- unchecked: which hash Ed25519 id_tokens use for it is not settled
-- across OpenID Connect's texts, and a wrong guess would refuse good
-- tokens.)
local AT_HASH = { RS256 = core.sha256, PS256 = core.sha256, ES256 = core.sha256 }

-- OpenID Connect Core 3.1.3.8/3.2.2.9: an id_token's `at_hash` is the
-- base64url of the left half of the hash of the access token it came with.
-- Returns nil when it matches, or is absent, or cannot be checked; else why not.
local function at_hash_mismatch(id_token, claims, access_token)
  local want = claims.at_hash
  if want == nil or type(access_token) ~= "string" then return nil end
  if type(want) ~= "string" then return "at_hash is not a string" end
  local parts = jwt.decode(id_token)
  local hash = parts and AT_HASH[parts.header.alg]
  if not hash then return nil end
  local digest = hash(access_token)
  if core.b64url_encode(digest:sub(1, math.floor(#digest / 2))) ~= want then
    return "at_hash does not match the access token (OpenID Connect Core 3.1.3.8)"
  end
end

--- Completes a token record with its id_token (called with the reply's
-- `fields` before anything is stored). `grant` is the request's
-- grant_type; `nonce` the one sent with an authorization-code request.
-- With an issuer: an authorization-code reply to a request with a nonce
-- must carry an id_token; any reply's id_token is validated, and its
-- claims go into `rec.id_token_claims`; a refresh reply without one keeps
-- the first claims. Without an issuer an id_token is ignored. Returns the
-- record, or nil and an error.
-- @tparam connkit.account.Account acct the account
-- @tparam table rec the new token record
-- @tparam table fields the token reply's fields
-- @tparam string grant the request's grant_type
-- @tparam[opt] string nonce the nonce sent
-- @treturn[1] table the record
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (id_token_invalid, ...)
function M.accept(acct, rec, fields, grant, nonce)
  if not enabled(acct) then return rec end
  local id_token = fields.id_token
  local old = acct._tok and acct._tok.id_token_claims
  local first = grant == "refresh_token" and type(old) == "table" and old or nil
  if id_token == nil then
    if nonce then return refuse("the token reply has none, though openid was in the scope") end
    rec.id_token_claims = first
    return rec
  end
  if type(id_token) ~= "string" then return refuse("it is not a string") end
  local claims, err = M.validate(acct, id_token, { nonce = nonce, first = first })
  if claims then
    local why = at_hash_mismatch(id_token, claims, rec.access_token)
    if why then claims, err = refuse(why) end
  end
  if not claims then
    err.message = "nothing stored: " .. acct:_redact(err.message)
    return nil, err
  end
  rec.id_token_claims = claims
  return rec
end

local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return out
end

--- The verified claims of the account's current id_token (a copy), or nil
-- and an error (`no_token`) when it has none.
-- @tparam connkit.account.Account acct the account
-- @treturn[1] table the claims
-- @return[2] nil
-- @treturn[2] connkit.errors.Error code "no_token"
function M.claims(acct)
  local rec = acct._tok
  local c = type(rec) == "table" and rec.id_token_claims
  if type(c) ~= "table" then
    return nil, errors.new("no_token", ("account '%s' has no verified id_token: log in with openid in the scope"
      .. " and oauth2.issuer set"):format(tostring(acct.id)))
  end
  return copy(c)
end

return M
