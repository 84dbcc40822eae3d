--- DPoP (RFC 9449): sender-constrained OAuth tokens. With `oauth2.dpop =
-- true` an account has a key pair of its own, made on first use and kept in
-- the token record (field `dpop_key`, PKCS #8 PEM), so a store that encrypts
-- records encrypts the key with them and every process on the store signs
-- with the same key (same thumbprint, `jkt`). Each token request and each
-- API transfer (every attempt, retry and redirect hop) carries a fresh proof
-- (a JWS of type "dpop+jwt" with the public key in its header); API requests
-- send the token as `Authorization: DPoP <token>` with `ath`, the hash of
-- that token, in the proof. A server's `DPoP-Nonce` is remembered per origin
-- and put in the next proofs; a `use_dpop_nonce` challenge (a token
-- endpoint's 400, a resource server's 401) is answered with one retry.
-- Authorization requests carry the key's thumbprint as `dpop_jkt` (RFC 9449
-- 10, added by connkit.auth.oauth2), which binds the code to the key.
-- Accounts without dpop never reach this module.
-- @module connkit.auth.dpop
local core = require "connkit.core"
local check = require "connkit.check"
local errors = require "connkit.errors"
local jwk = require "connkit.auth.jwk"
local jwt = require "connkit.auth.jwt"
local urls = require "connkit.http.url"

local b64url_encode, sha256, random = core.b64url_encode, core.sha256, core.random

local M = {}

--- The proof algorithms an account key may use (RFC 9449 asks for an
-- asymmetric one).
M.ALGS = { "ES256", "EdDSA", "RS256", "PS256" }

-- Per Lua state: origin -> the latest DPoP-Nonce that server gave.
local nonces = {}

--- Forgets every remembered nonce (tests).
function M.flush() nonces = {} end

--- The nonce remembered for `url`'s origin, or nil.
-- @tparam string url a URL of the server
-- @treturn string|nil the nonce
function M.nonce(url) return nonces[urls.origin(url) or ""] end

--- Checks `dpop` and `dpop_alg` of an `oauth2` block into `out`.
-- @tparam table ctx the check context
-- @tparam table b the oauth2 block as given
-- @tparam table out the normalized block, completed here
-- @raise naming the field
function M.check_definition(ctx, b, out)
  out.dpop = check.boolean(ctx, "oauth2.dpop", b.dpop, false)
  if b.dpop_alg ~= nil and not out.dpop then ctx.fail("oauth2.dpop_alg", "needs oauth2.dpop = true") end
  if out.dpop then
    out.dpop_alg = check.string(ctx, "oauth2.dpop_alg", b.dpop_alg, { default = "ES256", one_of = M.ALGS })
    out.dpop_alg_given = b.dpop_alg ~= nil
  end
end

--- With dpop the token goes in the Authorization header with the DPoP
-- scheme (RFC 9449 7.1): the default auth_token becomes "DPoP {token}"; an
-- auth_token of another place or scheme is refused, naming the field.
-- @tparam table ctx the check context
-- @tparam[opt] table given the definition's auth_token
-- @tparam table at the normalized auth_token (changed here)
-- @tparam table names the parameter names
-- @raise naming the field
function M.check_auth_token(ctx, given, at, names)
  given = given or {}
  if at.type ~= "header" or at.name:lower() ~= "authorization" then
    ctx.fail("auth_token", "must be the Authorization header with oauth2.dpop (RFC 9449 7.1)")
  end
  if given.value == nil then
    at.template = check.template(ctx, "auth_token.value", "DPoP {token}", "header", names)
  elseif not given.value:find("^DPoP ") then
    ctx.fail("auth_token.value", 'must be "DPoP {token}" with oauth2.dpop (the DPoP scheme, RFC 9449 7.1)')
  end
end

--- Marks an account as a DPoP one (at its creation).
-- @tparam connkit.account.Account acct the account
function M.setup(acct)
  acct._dpop = acct.integration.oauth2.dpop_alg
end

--- Forgets the account's key (its tokens were dropped: revoke): the next
-- token request makes a new one.
-- @tparam connkit.account.Account acct the account
function M.forget(acct)
  acct._dpop_key, acct._dpop_pem, acct._dpop_jwk = nil, nil, nil
end

-- The algorithm of a new key: dpop_alg; with discovery, when the issuer's
-- dpop_signing_alg_values_supported leaves out the default, the first one
-- listed that connkit has (an explicit dpop_alg it leaves out: "config").
local function new_key_alg(acct)
  local o = acct.integration.oauth2
  local discovery = require "connkit.auth.discovery"
  local meta, err = discovery.metadata(acct)
  if meta == nil then return nil, err end
  local member = "dpop_signing_alg_values_supported"
  if discovery.supports(meta, member, o.dpop_alg) ~= false then return o.dpop_alg end
  if o.dpop_alg_given then
    return nil, errors.new("config", ("oauth2.dpop_alg %s is not in the issuer's %s"):format(o.dpop_alg, member))
  end
  for _, v in ipairs(meta[member]) do
    for _, alg in ipairs(M.ALGS) do
      if v == alg then return alg end
    end
  end
  return nil, errors.new("config", ("the issuer's %s lists no algorithm connkit signs with (%s)")
    :format(member, table.concat(M.ALGS, ", ")))
end

-- Makes the key object of PEM text the account's.
local function use(acct, pem, key)
  acct:_add_secret(pem)
  acct._dpop_pem, acct._dpop_key = pem, key
  acct._dpop_jwk = key:public_jwk()
  -- (a key read back from PEM has no alg: its type's, dpop_alg for RSA)
  local alg = acct.integration.oauth2.dpop_alg
  acct._dpop_alg = key.alg or (jwk.ALG_KTY[alg] == key.kty and alg) or jwk.DEFAULT_ALG[key.kty]
end

--- The account's key: the one in its token record (made by whichever
-- process fetched the token), else the one made here before, else a new one
-- (kept in memory until a token reply puts it into the record).
-- @return the key object, or nil and an error (code "key")
-- @tparam connkit.account.Account acct the account
function M.key(acct)
  local rec = acct._tok
  local pem = rec and rec.dpop_key
  if type(pem) == "string" and pem ~= acct._dpop_pem then
    local key, err = jwk.key { pem = pem }
    if not key then
      return nil, errors.new("key", ("account '%s': the DPoP key in the token record cannot be read: %s")
        :format(acct.id, err.message))
    end
    use(acct, pem, key)
  end
  if not acct._dpop_key then
    local alg, aerr = new_key_alg(acct)
    if not alg then return nil, aerr end
    local key = jwk.generate { alg = alg }
    use(acct, key:private_pem(), key)
  end
  return acct._dpop_key
end

--- The RFC 7638 thumbprint of the account's key (the `jkt` a server binds
-- its tokens to), or nil and an error.
-- @tparam connkit.account.Account acct the account
-- @treturn[1] string the thumbprint
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.thumbprint(acct)
  local key, err = M.key(acct)
  if not key then return nil, err end
  return key:thumbprint()
end

--- A fresh proof for `method` on `url`: jti, htm, htu (the URL without query
-- and fragment), iat, `ath` when `token` is given, and the origin's nonce.
-- @return the proof, or nil and an error
-- @tparam connkit.account.Account acct the account
-- @tparam string method the HTTP method
-- @tparam string url the URL
-- @tparam[opt] string token the access token the request carries
function M.proof(acct, method, url, token)
  local key, err = M.key(acct)
  if not key then return nil, err end
  local claims = {
    jti = b64url_encode(random(16)), htm = method, htu = url:match("^[^?#]*"), iat = os.time(),
  }
  if token then claims.ath = b64url_encode(sha256(token)) end
  local nonce = nonces[urls.origin(url) or ""]
  if nonce then claims.nonce = nonce end
  return jwt.sign({ typ = "dpop+jwt", alg = acct._dpop_alg, jwk = acct._dpop_jwk, kid = false }, claims, key)
end

--- Remembers the DPoP-Nonce of a reply from `url`'s server. Returns true
-- when the reply is a challenge to retry with it: a 401 whose
-- WWW-Authenticate names the DPoP scheme with error="use_dpop_nonce"
-- (RFC 9449 9), or (`token_endpoint`) an OAuth error use_dpop_nonce (8).
-- @tparam string url the URL the reply came from
-- @tparam connkit.http.response.Response res the reply
-- @tparam[opt] boolean token_endpoint the reply is a token endpoint's
-- @treturn boolean whether to retry with the nonce
function M.observe(url, res, token_endpoint)
  local h = res.headers
  local nonce = h and h["dpop-nonce"]
  if type(nonce) ~= "string" or nonce == "" or not core.header_safe(nonce) then return false end
  nonces[urls.origin(url) or ""] = nonce
  if token_endpoint then return res.status == 400 end
  local wa = h["www-authenticate"]
  -- (auth scheme names are case-insensitive, RFC 9110 11.1)
  return res.status == 401 and type(wa) == "string" and wa:lower():find("dpop") ~= nil
    and wa:find('error="use_dpop_nonce"', 1, true) ~= nil
end

--- The wire spec of one API transfer of `req` over transport `t` with
-- `left` seconds: the request's header lines and a fresh proof (with the
-- `ath` of the token the request carries). nil and an error when no proof
-- can be made.
-- @tparam table t the transport module
-- @tparam connkit.http.request.Request req the request
-- @tparam number left the seconds left
-- @treturn[1] table the spec
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.spec(t, req, left)
  local acct = rawget(req, "_account")
  local proof, err = M.proof(acct, req.method, req.url, rawget(req, "_token") or nil)
  if not proof then return nil, err end
  local lines = {}
  for i, l in ipairs(rawget(req, "header_lines")) do lines[i] = l end
  lines[#lines + 1] = "DPoP: " .. proof
  local timeout = rawget(req, "timeout")
  local w, code, msg = t.of_table {
    method = req.method, url = req.url, body = req.body, header_lines = lines,
    timeout = left < timeout and left or timeout, connect_timeout = req.connect_timeout,
    ca_file = req.ca_file, max_body = req.max_body, decompress = req.decompress,
  }
  if not w then return require("connkit.http.request").fail(req, code, msg) end
  return w
end

--- A call to the token endpoint with a proof (connkit.auth.token_endpoint's
-- call), and once more with the server's nonce when it answers
-- use_dpop_nonce. Returns what that call returns.
-- @tparam connkit.account.Account acct the account
-- @tparam string url the endpoint
-- @tparam string method "POST" or "GET"
-- @tparam table params the parameters
-- @tparam table headers the header lines
-- @tparam string what the endpoint's name in messages
-- @treturn[1] table the reply's fields
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.token_call(acct, url, method, params, headers, what)
  local endpoint = require "connkit.auth.token_endpoint"
  local fields, err
  for try = 1, 2 do
    local h = {}
    for i, l in ipairs(headers) do h[i] = l end
    local proof, perr = M.proof(acct, method, url, nil)
    if not proof then return nil, perr end
    h[#h + 1] = "DPoP: " .. proof
    fields, err = endpoint.call(acct, url, method, params, h, what)
    if fields or try == 2 or err.oauth_error ~= "use_dpop_nonce" or not M.nonce(url) then break end
    if params.client_assertion ~= nil then
      -- a client assertion's jti is single-use (RFC 7523 3): sign a new one
      local ok, aerr = endpoint.authenticate(acct, params, {})
      if not ok then return nil, aerr end
    end
  end
  return fields, err
end

--- Takes a token reply's record (connkit.auth.token_endpoint): it must be
-- a DPoP-bound token (token_type "DPoP"); the key that made the proof goes
-- into the record, to be stored with the tokens. true, or nil and an error.
-- @tparam connkit.account.Account acct the account
-- @tparam table rec the token record
-- @tparam string what the endpoint's name in messages
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "token_endpoint")
function M.accept(acct, rec, what)
  if rec.token_type ~= "dpop" then
    return nil, errors.new("token_endpoint", ("%s issued a %s token, not a DPoP-bound one (oauth2.dpop is set)")
      :format(what, rec.token_type))
  end
  rec.dpop_key = acct._dpop_pem
  return true
end

return M
