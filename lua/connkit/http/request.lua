--- Requests: prepare (templates, auth, request parameters, body) and the
-- request object. (Sending, refresh and retry on on_status, redirects:
-- connkit.http.attempt; replies: connkit.http.response; non-blocking requests:
-- connkit.http.async; the one deadline over every step: connkit.http.deadline.)
-- @module connkit.http.request
local core = require "connkit.core"
local errors = require "connkit.errors"
local check = require "connkit.check"
local retry = require "connkit.http.retry"
local rate_limit = require "connkit.http.rate_limit"
local files = require "connkit.http.files"

local json = require "connkit.json"
local urls = require "connkit.http.url"
require "connkit.http.response" -- the metatable of every reply

local find, sub, upper, concat = string.find, string.sub, string.upper, table.concat
local wire = core.wire
local raise = check.raise -- (raises at the caller's line, see connkit.options)

local M = {}

-- -------------------------------------------------------------------------
-- Requests
-- -------------------------------------------------------------------------

--- A prepared request (account:prepare). Read its fields; to change a
-- request, prepare a new one (what is sent was read into C when it was
-- prepared, and again after a token refresh). tostring(req) masks the
-- secrets. Its methods: send (connkit.http.attempt), start
-- (connkit.http.async).
-- @table Request
-- @field method the HTTP method
-- @field url the final URL (templates filled, query and auth query added)
-- @field headers the final header lines as a `{ Name = value }` table
--   (made on each read)
-- @field timeout seconds, the one deadline of the whole request
local Request = {}
M.Request = Request
local RequestMT = { __name = "connkit.request" }
M.RequestMT = RequestMT

-- req.headers: the final header lines as a { Name = value } table, made on
-- demand (the lines themselves are what the engine sends).
RequestMT.__index = function(req, k)
  if k == "headers" then
    local h = {}
    for _, line in ipairs(rawget(req, "header_lines")) do
      local name, value = line:match("^([^:]+):%s*(.*)$")
      if name and value ~= "" then h[name] = value end
    end
    return h
  end
  return Request[k]
end

RequestMT.__tostring = function(req)
  local acct = rawget(req, "_account")
  local lines = {}
  for _, line in ipairs(rawget(req, "header_lines")) do
    if line == acct._auth_line then line = line:match("^[^:]+") .. ": ***" end
    lines[#lines + 1] = line
  end
  return acct:_redact(("connkit.request %s %s [%s]"):format(req.method, req.url, concat(lines, "; ")))
end

-- the request options and what each must be (see check.options)
local REQUEST_OPTIONS = {
  method = "nonempty", url = "string", vars = "values", query = "query", headers = "headers",
  json = "any", body = "string", form = "query", timeout = "timeout", retry = "retry",
  follow = "follow", max_body = "bytes", rate_limit = "rate_limit",
  auth = "boolean",
  decompress = "boolean",
  output = "nonempty", on_data = "callable", multipart = "any", -- connkit.http.files
}

local METHOD = "^[!#$%%&'*+%-.^_`|~%w]+$"
local KNOWN_METHOD = { GET = "GET", POST = "POST", PUT = "PUT", PATCH = "PATCH", DELETE = "DELETE", HEAD = "HEAD" }

-- Per-request headers (a { Name = value | false } table, checked by
-- check.options) plus our own extra lines. Returns the lines the request
-- adds and the set of lower-case names they replace or remove among the
-- account's lines, or nil, err.
local function request_headers(user, extra)
  local own, drop = {}, {}
  if user then
    local names = {}
    for k in pairs(user) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do
      local v = user[k]
      drop[k:lower()] = true
      if v ~= false then
        if type(v) == "number" then v = core.format_number(v) end
        if not core.header_safe(v) then
          return nil, errors.new("header", ("the value of header %s holds CR, LF or NUL; request not sent"):format(k))
        end
        -- "Name;" is how curl sends a header with an empty value
        own[#own + 1] = v == "" and (k .. ";") or (k .. ": " .. v)
      end
    end
  end
  for _, l in ipairs(extra) do
    local k = l:match("^([^:]+)"):lower()
    if not drop[k] then own[#own + 1] = l; drop[k] = true end
  end
  return own, drop
end

local NO_LINES = {}

-- A wire spec is immutable (csrc/http_spec.c) and most requests an account
-- prepares are the same one again (a loop over one endpoint), so the spec
-- made last for a request with no body, sink, multipart or header lines of
-- its own is kept on the account (acct._last_wire) and handed to the next
-- request that would read the same fields into C: no second userdata,
-- header list or parsed URL per request. Every field core.wire reads is
-- compared (header_lines by identity: the account's lines are replaced,
-- never changed in place); the ones every request has are read directly,
-- the optional ones with rawget (a missing key would reach __index).
local rawget = rawget
local function same_wire(req, last)
  return req.url == last.url and req.method == last.method and req.header_lines == last.header_lines
    and req.timeout == last.timeout and rawget(req, "connect_timeout") == last.connect_timeout
    and rawget(req, "ca_file") == last.ca_file and rawget(req, "client_tls") == last.client_tls
    and rawget(req, "shown_url") == last.shown_url and rawget(req, "max_body") == last.max_body
    and rawget(req, "decompress") == last.decompress
end

local function wire_of(req, acct)
  local can_share = rawget(req, "_own_lines") == nil and rawget(req, "body") == nil
    and rawget(req, "output") == nil and rawget(req, "on_data") == nil and rawget(req, "multipart") == nil
  local last = acct._last_wire
  if can_share and last and same_wire(req, last) then return last.wire end
  local w, code, msg = wire(req)
  if w and can_share then
    if not last then last = {}; acct._last_wire = last end -- (filled in place: no garbage per miss)
    last.wire, last.url, last.method, last.header_lines = w, req.url, req.method, req.header_lines
    last.timeout, last.connect_timeout = req.timeout, rawget(req, "connect_timeout")
    last.ca_file, last.client_tls = rawget(req, "ca_file"), rawget(req, "client_tls")
    last.shown_url, last.max_body = rawget(req, "shown_url"), rawget(req, "max_body")
    last.decompress = rawget(req, "decompress")
  end
  return w, code, msg
end

-- Fills in the parts that come from the account now (auth line, query), so a
-- request prepared before a token refresh goes out with the new token, and
-- makes the wire spec the curl transport sends (core.wire reads the
-- request once; it also refuses what no transport may send).
-- A request to an origin the integration does not name (req._bare) gets
-- neither. Returns true, or nil and an error (a header line with CR, LF or NUL).
local function finalize(req, acct)
  -- (a base_url filled from token metadata may have changed since: connkit.auth.token_metadata)
  if rawget(req, "_base_used") then require("connkit.auth.token_metadata").rebase(req, acct) end
  req._src_lines = acct._lines
  req._token = acct._values.token
  local acct_lines = acct._lines
  if req._bare then
    req.url, acct_lines = req._url_noauth, NO_LINES
  else
    req.url = urls.add_query(req._url_noauth, acct._query)
  end
  local own = req._own_lines
  if own then
    local drop, lines = req._drop, {}
    for _, l in ipairs(acct_lines) do
      if not drop[l:match("^([^:]+)"):lower()] then lines[#lines + 1] = l end
    end
    for _, l in ipairs(own) do lines[#lines + 1] = l end
    req.header_lines = lines
  else
    req.header_lines = acct_lines
  end
  if acct._secrets then -- res.url: no secret in the query (auth_token type "query")
    local shown = acct:_redact(req.url)
    req.shown_url = shown ~= req.url and shown or nil
  end
  local w, code, msg = wire_of(req, acct)
  req._wire = w or false
  if not w then return M.fail(req, code, msg) end
  return true
end

--- Builds the final request without sending it (account:prepare).
-- @tparam connkit.account.Account acct the account
-- @tparam table opts the request options (README "Requests")
-- @treturn[1] Request the request
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "template", "header", ...)
-- @raise for an unknown option or one of the wrong type, naming it
function M.prepare(acct, opts)
  if type(opts) ~= "table" then raise("request: options must be a table, not a " .. type(opts)) end
  check.options("request", opts, REQUEST_OPTIONS)
  if acct._meta_pending then
    -- base_url (or another static part) waits for a value the first token brings
    local ok, err = require("connkit.auth.token_metadata").first_token(acct)
    if not ok then return nil, err end
  end
  local method = KNOWN_METHOD[opts.method or "GET"]
  if not method then
    method = opts.method
    if not find(method, METHOD) then raise("request: option 'method' must be an HTTP method name") end
    method = upper(method)
  end
  local url = opts.url
  if url == nil then raise("request: option 'url' is required") end
  if find(url, "{", 1, true) or find(url, "}", 1, true) then
    local s, err = acct:fill(url, "url", opts.vars or acct._values)
    if not s then return nil, err end
    url = s
  end
  -- The URLs that may carry the account's credentials: relative ones
  -- (joined to base_url) and absolute ones at a named origin. Both are kept
  -- in _abs_urls (URL -> full URL), other absolute ones in _foreign_urls, up
  -- to 256 each per account (the count lives at [0], where no URL string
  -- can clash with it), so a request to a known URL costs one lookup.
  local abs = acct._abs_urls
  if not abs then abs = { [0] = 0 }; acct._abs_urls = abs end
  local full = abs[url]
  local bare = false
  if full then
    url = full
  elseif not urls.is_absolute(url) then
    if not acct._base then raise("request: url '" .. url .. "' is relative and the integration has no base_url") end
    full = urls.join(acct._base, url)
    if abs[0] >= 256 then abs = { [0] = 0 }; acct._abs_urls = abs end
    abs[url] = full
    abs[0] = abs[0] + 1
    url = full
  elseif acct._origins then
    local foreign = acct._foreign_urls
    if not (foreign and foreign[url]) then
      if acct._origins[urls.origin(url)] then
        if abs[0] >= 256 then abs = { [0] = 0 }; acct._abs_urls = abs end
        abs[url] = url
        abs[0] = abs[0] + 1
      else
        if not foreign or foreign[0] >= 256 then foreign = { [0] = 0 }; acct._foreign_urls = foreign end
        foreign[url] = true
        foreign[0] = foreign[0] + 1
        bare = true
      end
    else
      bare = true
    end
  end
  -- auth = true sends the credentials to any origin; false to none
  if opts.auth ~= nil then bare = not opts.auth end
  if opts.query ~= nil then
    url = urls.add_query(url, urls.encode_pairs(opts.query, "query", "request: query"))
  end

  local body, ctype = nil, nil
  local nbody = (opts.json ~= nil and 1 or 0) + (opts.form ~= nil and 1 or 0) + (opts.body ~= nil and 1 or 0)
  if nbody > 1 then raise("request: give only one of the options json, form and body") end
  if opts.json ~= nil then
    local err
    body, err = json.encode(opts.json)
    if not body then raise("request: option 'json' cannot be encoded: " .. err) end
    ctype = "Content-Type: application/json"
  elseif opts.form ~= nil then
    body = urls.encode_pairs(opts.form, "form", "request: form")
    ctype = "Content-Type: application/x-www-form-urlencoded"
  elseif opts.body ~= nil then
    body = opts.body
    ctype = "Content-Type:" -- no type unless the caller gives one
  end
  local timeout = opts.timeout
  local follow = opts.follow
  if follow == true then follow = 5 end

  -- every field finalize() sets is in the constructor, so the table is sized
  -- once (adding keys later rehashes it)
  local req = {
    method = method, _account = acct, _url_noauth = url,
    timeout = timeout or acct._timeout, connect_timeout = acct._connect_timeout,
    url = url, header_lines = false, _src_lines = false, _token = false, _wire = false,
    _bare = bare,
  }
  if body then req.body = body end
  if acct._dpop and not bare then req._dpop = true end -- (a DPoP proof per transfer: connkit.auth.dpop)
  if acct._ca_file then req.ca_file = acct._ca_file end
  -- the client certificate (mTLS) goes where the credentials go
  if acct._client_tls and not bare then req.client_tls = acct._client_tls end
  if follow then req.follow = follow end
  if opts.max_body then req.max_body = opts.max_body end
  if opts.decompress == false then req.decompress = false end -- the raw body; no Accept-Encoding
  if acct._rebase then require("connkit.auth.token_metadata").mark(req, acct) end
  if opts.output ~= nil or opts.on_data ~= nil or opts.multipart ~= nil then
    local ok, ferr = files.prepare(req, opts, nbody > 0)
    if not ok then return nil, ferr end
  end
  local rules = opts.retry == nil and acct.integration.retry or retry.rules(acct, opts.retry)
  if rules then req._retry = rules end
  local rate = rate_limit.rule(acct, opts.rate_limit)
  if rate then req._rate = rate end
  -- static auth and nothing to follow, retry or rate-limit: send() and all() can take
  -- their short path (a field that is always there: reading it never
  -- reaches the __index function)
  -- (a request that carries no credentials needs no token either)
  -- (nor hooks: on_request/on_response are called from Lua, connkit.hooks)
  req._plain = not follow and not rules and not rate and (bare or not acct._ensure_token) and not acct._hooks
  -- (a multipart body: libcurl sets its Content-Type, with the boundary)
  local sends_body = body ~= nil or req.multipart ~= nil
  if opts.headers or ctype or sends_body then
    -- "Name:" with no value makes curl leave out a header it would add itself
    -- (a form Content-Type for any body, "Expect: 100-continue" for big ones)
    local extra = {}
    if ctype then extra[1] = ctype end
    if sends_body then extra[#extra + 1] = "Expect:" end
    local own, drop = request_headers(opts.headers, extra)
    if not own then return nil, drop end
    req._own_lines, req._drop = own, drop
  end
  setmetatable(req, RequestMT)
  local ok, err = finalize(req, acct)
  if not ok then return nil, err end
  return req
end

--- Wraps a failure of the engine into an error naming the request, not its
-- secrets.
-- @tparam Request req the request
-- @tparam string code the error code
-- @tparam string msg the engine's message
-- @tparam[opt] table extra more fields of the error
-- @return nil
-- @treturn connkit.errors.Error the error, its message led by method and URL
--   (no query, no secret)
-- @local
function M.fail(req, code, msg, extra)
  local acct = rawget(req, "_account")
  return nil, errors.new(code, acct:_redact(("%s %s: %s"):format(req.method, urls.safe_url(req.url), msg)), extra)
end
local fail = M.fail

--- Fills in the parts of `req` that come from its account now (see
-- finalize above); used by connkit.http.attempt after a token refresh.
-- @local
M.finalize = finalize

return M
