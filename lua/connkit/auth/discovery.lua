--- Authorization server metadata: RFC 8414 and OpenID Connect Discovery 1.0.
-- With `oauth2.issuer` set, the endpoints a definition leaves out come from
-- the issuer's metadata document, fetched through the transport in use
-- (curl or ngx cosockets) and kept per Lua state as long as its HTTP caching
-- headers allow. Also here: the checks of an authorization response's `iss`
-- (RFC 9207), which depend on what the issuer is and what it advertised.
-- @module connkit.auth.discovery
local core = require "connkit.core"
local check = require "connkit.check"
local errors = require "connkit.errors"
local endpoint = require "connkit.auth.token_endpoint"
local retry = require "connkit.http.retry"
local urls = require "connkit.http.url"
local cjson = require "cjson.safe"

local M = {}

--- Seconds a metadata document without caching headers is kept.
M.DEFAULT_TTL = 86400

-- definition field -> metadata member (RFC 8414 section 2, RFC 8628, RFC 9126)
local MEMBER = {
  authorize_url = "authorization_endpoint",
  token_url = "token_endpoint",
  revoke_url = "revocation_endpoint",
  device_authorization_url = "device_authorization_endpoint",
  jwks_uri = "jwks_uri",
  par_url = "pushed_authorization_request_endpoint",
}
M.MEMBER = MEMBER

-- Per Lua state (one per process; one per worker in OpenResty): issuer and
-- mode -> { meta, expires }.
local cache = {}

--- Forgets every cached metadata document (tests, or a caller that knows
-- the issuer changed its configuration).
function M.flush()
  cache = {}
end

--- Checks `oauth2.issuer` and `oauth2.discovery` of a definition into `out`
-- (the normalized block): the issuer is an https:// URL template with no
-- query or fragment; discovery is true (the default with an issuer: OpenID
-- Connect's well-known document, then RFC 8414's), "openid", "oauth" (only
-- that one) or false (no fetch: the issuer only checks `iss`). Returns true
-- when the endpoints may come from metadata.
-- @tparam table b the oauth2 block as given
-- @tparam table out the normalized block, completed here
-- @tparam table env the check environment (ctx, secure_url, ...; see
--   connkit.auth.oauth2.check_definition)
-- @treturn boolean whether endpoints may come from metadata
-- @raise naming the field
function M.check_definition(b, out, env)
  local ctx = env.ctx
  local mode = b.discovery
  if mode ~= nil and mode ~= true and mode ~= false and mode ~= "openid" and mode ~= "oauth" then
    ctx.fail("oauth2.discovery", 'must be true, false, "openid" or "oauth"')
  end
  if b.issuer == nil then
    if mode ~= nil and mode ~= false then ctx.fail("oauth2.discovery", "needs oauth2.issuer") end
    return false
  end
  check.string(ctx, "oauth2.issuer", b.issuer)
  if b.issuer:find("[?#]") then ctx.fail("oauth2.issuer", "must have no query or fragment (RFC 8414)") end
  out.issuer = env.secure_url("oauth2.issuer", b.issuer)
  if mode == false then return false end
  out.discovery = (mode == nil or mode == true) and "auto" or mode
  return true
end

-- The well-known URLs of an issuer, in the order they are tried.
local function well_known(issuer, mode)
  local origin, path = issuer:match("^(%a[%w+.-]*://[^/?#]*)(.*)$")
  path = path:gsub("/$", "")
  -- OpenID Connect Discovery 4: appended to the issuer
  local oidc = origin .. path .. "/.well-known/openid-configuration"
  -- RFC 8414 3.1: inserted between the host and the issuer's path
  local oauth = origin .. "/.well-known/oauth-authorization-server" .. path
  if mode == "openid" then return { oidc } end
  if mode == "oauth" then return { oauth } end
  return { oidc, oauth }
end
M.well_known = well_known

-- Seconds the reply may be kept (RFC 9111: Cache-Control max-age, else
-- Expires, less Age), or nil when it must not be kept (no-store, no-cache,
-- max-age=0, an Expires in the past or unreadable).
local function freshness(headers)
  local cc = (headers["cache-control"] or ""):lower()
  if cc:find("no%-store") or cc:find("no%-cache") then return nil end
  local ttl = tonumber(cc:match("max%-age%s*=%s*\"?(%d+)") or "")
  if not ttl and headers["expires"] then
    local v = headers["expires"]
    ttl = not v:find("^%s*%d+%s*$") and retry.retry_after(v, os.time()) or 0
  end
  if not ttl then return M.DEFAULT_TTL end
  ttl = ttl - (tonumber(headers["age"] or "") or 0)
  if ttl <= 0 then return nil end
  return ttl
end
M.freshness = freshness

-- One GET of a metadata URL: the decoded document, or nil, an error and
-- whether the next well-known URL is worth trying (the server answered, but
-- not with a document).
local function fetch_one(acct, url)
  local res, code, msg = endpoint.transfer {
    method = "GET", url = url, header_lines = { "Accept: application/json" },
    timeout = acct._timeout, connect_timeout = acct._connect_timeout, ca_file = acct._ca_file,
    client_tls = acct._client_tls,
  }
  local where = "authorization server metadata " .. urls.safe_url(url)
  if not res then return nil, errors.new(code, acct:_redact(("%s: %s"):format(where, msg))), false end
  local doc = res.status == 200 and cjson.decode(res.body)
  if type(doc) ~= "table" or doc[1] ~= nil or next(doc) == nil then
    return nil, errors.new("token_endpoint", acct:_redact(("%s answered %d%s"):format(where, res.status,
      res.status == 200 and " with something that is not a JSON object" or "")), { status = res.status }), true
  end
  for k, v in pairs(doc) do
    if v == cjson.null then doc[k] = nil end
  end
  return doc, freshness(res.headers), url
end

-- Fetches the metadata of `issuer`: the document and how long it may be
-- kept, or nil and an error. The document must name exactly this issuer
-- (RFC 8414 3.3, OpenID Connect Discovery 4.3).
local function fetch(acct, issuer, mode)
  local err
  for _, url in ipairs(well_known(issuer, mode)) do
    local doc, ttl, next_ok = fetch_one(acct, url)
    if doc then
      if doc.issuer ~= issuer then
        return nil, errors.new("issuer_mismatch", acct:_redact(("oauth2.issuer: the metadata at %s names the issuer %s,"
          .. " not %s (RFC 8414 3.3): the definition is refused"):format(urls.safe_url(url),
          type(doc.issuer) == "string" and ("%q"):format(doc.issuer) or "(none)", ("%q"):format(issuer))))
      end
      return doc, ttl
    end
    err = ttl
    if not next_ok then break end
  end
  return nil, err
end

--- The issuer's metadata for an account: the document (a table), false when
-- the definition does not use discovery, or nil and an error
-- (`issuer_mismatch`; a network code when it could not be fetched;
-- `token_endpoint` when no well-known URL gave a JSON document).
-- @tparam connkit.account.Account acct the account
-- @treturn[1] table|boolean the document, or false
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.metadata(acct)
  local o = acct.integration.oauth2
  if not (o and o.discovery) then return false end
  local issuer, ferr = acct:fill(o.issuer)
  if not issuer then return nil, ferr end
  local now = core.now()
  local mine = acct._discovery
  if mine and mine.issuer == issuer and now < mine.expires then return mine.meta end
  local key = o.discovery .. " " .. issuer
  local entry = cache[key]
  if not (entry and now < entry.expires) then
    cache[key] = nil
    local meta, ttl = fetch(acct, issuer, o.discovery)
    if not meta then return nil, ttl end
    -- not to be kept (no-store ...): this account keeps it, others fetch again
    entry = { meta = meta, expires = now + (ttl or M.DEFAULT_TTL) }
    if ttl then cache[key] = entry end
  end
  acct._discovery = { issuer = issuer, meta = entry.meta, expires = entry.expires }
  return entry.meta
end

-- A URL from metadata, checked like a definition's endpoint: http(s), and
-- https:// unless the host is loopback or allow_insecure_http is set.
local function checked_url(acct, member, v)
  local problem
  local origin = type(v) == "string" and urls.origin(v)
  if not origin or not origin:find("^https?://") then
    problem = "is not an http(s) URL"
  elseif origin:find("^http:") and not acct.integration.allow_insecure_http
      and not urls.is_loopback((origin:match("^http://%[?(.-)%]?:%d+$") or ""):lower()) then
    problem = "uses http:// to a host that is not a loopback address"
  end
  if problem then
    return nil, errors.new("config", ("the issuer's metadata: %s %s"):format(member, problem))
  end
  return v
end

--- The URL of an endpoint (`field`: authorize_url, token_url, revoke_url,
-- device_authorization_url, jwks_uri or par_url): the definition's own when
-- it has one, else the metadata's. With discovery the metadata is resolved
-- first in either case, so a mismatched issuer is refused at first use.
-- Returns the URL; false when `optional` and nobody names one; or nil and
-- an error (`config` when the endpoint is named nowhere).
-- @tparam connkit.account.Account acct the account
-- @tparam string field the endpoint's field name
-- @tparam[opt] boolean optional false rather than an error when nobody names it
-- @treturn[1] string|boolean the URL, or false
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.url(acct, field, optional)
  local o = acct.integration.oauth2
  local meta, err = M.metadata(acct)
  if meta == nil then return nil, err end
  if o[field] then return acct:fill(o[field], "url") end
  local v = meta and meta[MEMBER[field]] or nil
  -- a client that presents a certificate uses the mTLS aliases (RFC 8705 5)
  local aliases = acct._client_tls and meta and meta.mtls_endpoint_aliases
  if type(aliases) == "table" and aliases[MEMBER[field]] ~= nil then v = aliases[MEMBER[field]] end
  if v == nil then
    if optional then return false end
    return nil, errors.new("config", meta and ("the issuer's metadata has no %s: set oauth2.%s"):format(MEMBER[field], field)
      or ("oauth2.%s is not set"):format(field))
  end
  return checked_url(acct, MEMBER[field], v)
end

--- True when `value` is listed in the metadata's `member` list, false when
-- the list is there without it, nil when the server does not say.
-- @tparam table|nil meta the metadata
-- @tparam string member the list's name
-- @param value the value looked for
-- @treturn boolean|nil
function M.supports(meta, member, value)
  local list = meta and meta[member]
  if type(list) ~= "table" then return nil end
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

--- What an authorization request needs from the issuer: its URL and what
-- finish_authorization will check `iss` against ({ issuer, required,
-- origin }), or nil and an error. With PKCE on, a server whose
-- code_challenge_methods_supported lacks S256 (only `plain`, say) is
-- refused (`config`): connkit never sends `plain`.
-- @tparam connkit.account.Account acct the account
-- @treturn[1] string the authorization endpoint
-- @treturn[1] table what to check iss against
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.authorization(acct)
  local o = acct.integration.oauth2
  local url, err = M.url(acct, "authorize_url")
  if not url then return nil, err end
  local meta = M.metadata(acct) or nil -- (resolved by M.url: no fetch here)
  if o.pkce and M.supports(meta, "code_challenge_methods_supported", "S256") == false then
    return nil, errors.new("config", "the issuer's metadata lists no PKCE method connkit uses (S256;"
      .. " plain is never sent): set oauth2.pkce = false only if the server does not need PKCE")
  end
  local issuer
  if o.issuer then
    issuer, err = acct:fill(o.issuer)
    if not issuer then return nil, err end
  end
  return url, {
    issuer = issuer,
    required = meta ~= nil and meta.authorization_response_iss_parameter_supported == true,
    origin = urls.origin(url),
  }
end

--- Checks the `iss` of an authorization response (RFC 9207) against what
-- M.authorization returned for its request: with an issuer it must be that
-- issuer exactly; without one its origin must be the authorization
-- endpoint's; absent, it is refused when the server advertised
-- authorization_response_iss_parameter_supported. Returns true, or nil and
-- an `issuer_mismatch` error.
-- @tparam table expect what M.authorization returned
-- @tparam[opt] string iss the response's iss
-- @tparam[opt] boolean duplicated iss came more than once
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.check_iss(expect, iss, duplicated)
  local why
  if duplicated then
    why = "carries iss more than once"
  elseif iss == nil then
    if expect.required then why = "has no iss, though the issuer advertises authorization_response_iss_parameter_supported" end
  elseif expect.issuer then
    if iss ~= expect.issuer then why = "comes from another issuer (iss)" end
  elseif urls.origin(iss) == nil or urls.origin(iss) ~= expect.origin then
    why = "names an iss whose origin is not the authorization endpoint's"
  end
  if why then return nil, errors.new("issuer_mismatch", "the authorization response " .. why) end
  return true
end

return M
