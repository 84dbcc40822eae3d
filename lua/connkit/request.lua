--- Requests: prepare (templates, auth, request parameters, body), send on
-- the shared transfer engine, refresh and retry on on_status, follow
-- redirects when asked. (Replies: connkit.response; non-blocking requests:
-- connkit.async.)
-- @module connkit.request
local core = require "connkit.core"
local errors = require "connkit.errors"
local check = require "connkit.check"
local retry = require "connkit.retry"

local cjson = require "cjson.safe"
local urls = require "connkit.url"
require "connkit.response" -- the metatable of every reply

local find, sub, upper, concat = string.find, string.sub, string.upper, table.concat
local engine = core.engine()
local perform = core.performer() -- perform(spec): engine:perform, bound
local wire = core.wire

local M = {}

---------------------------------------------------------------------------
-- Requests
---------------------------------------------------------------------------

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

local REQUEST_FIELDS = {
  method = true, url = true, vars = true, query = true, headers = true, json = true,
  body = true, form = true, timeout = true, retry = true, follow = true, max_body = true,
  decompress = true,
}

local METHOD = "^[!#$%%&'*+%-.^_`|~%w]+$"
local KNOWN_METHOD = { GET = "GET", POST = "POST", PUT = "PUT", PATCH = "PATCH", DELETE = "DELETE", HEAD = "HEAD" }

-- Per-request headers (a { Name = value | false } table) plus our own extra
-- lines. Returns the lines the request adds and the set of lower-case names
-- they replace or remove among the account's lines, or nil, err.
local function request_headers(user, extra)
  local own, drop = {}, {}
  if user then
    local names = {}
    for k in pairs(user) do
      if type(k) ~= "string" or not find(k, check.HEADER_NAME) then
        error("request: headers." .. tostring(k) .. " is not a valid header name", 4)
      end
      names[#names + 1] = k
    end
    table.sort(names)
    for _, k in ipairs(names) do
      local v = user[k]
      drop[k:lower()] = true
      if v ~= false then
        if type(v) == "number" then v = tostring(v) end
        if type(v) ~= "string" then error("request: headers." .. k .. " must be a string or false", 4) end
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

-- Fills in the parts that come from the account now (auth line, query), so a
-- request prepared before a token refresh goes out with the new token, and
-- makes the wire spec the engine sends (core.wire reads the request once).
-- Returns true, or nil and an error (a header line with CR, LF or NUL).
local function finalize(req, acct)
  req._src_lines = acct._lines
  req._token = acct._values.token
  req.url = urls.add_query(req._url_noauth, acct._query)
  local own = req._own_lines
  if own then
    local drop, lines = req._drop, {}
    for _, l in ipairs(acct._lines) do
      if not drop[l:match("^([^:]+)"):lower()] then lines[#lines + 1] = l end
    end
    for _, l in ipairs(own) do lines[#lines + 1] = l end
    req.header_lines = lines
  else
    req.header_lines = acct._lines
  end
  local w, code, msg = wire(req)
  req._wire = w or false
  if not w then return M.fail(req, code, msg) end
  return true
end

--- Builds the final request (see API.md section 3) without sending it.
-- Returns the request object, or nil and an error (e.g. code "template").
function M.prepare(acct, opts)
  if type(opts) ~= "table" then error("request: options must be a table", 3) end
  for k in pairs(opts) do
    if not REQUEST_FIELDS[k] then error("request: unknown option '" .. tostring(k) .. "'", 3) end
  end
  local method = KNOWN_METHOD[opts.method or "GET"]
  if not method then
    method = opts.method
    if type(method) ~= "string" or not find(method, METHOD) then error("request: method must be an HTTP method name", 3) end
    method = upper(method)
  end
  local url = opts.url
  if type(url) ~= "string" then error("request: url must be a string", 3) end
  if find(url, "{", 1, true) or find(url, "}", 1, true) then
    if opts.vars ~= nil and type(opts.vars) ~= "table" then error("request: vars must be a table", 3) end
    local s, err = acct:fill(url, "url", opts.vars or acct._values)
    if not s then return nil, err end
    url = s
  end
  -- relative URL -> joined URL, kept for up to 256 URLs per account (the
  -- count lives at [0], where no URL string can clash with it)
  local abs = acct._abs_urls
  if not abs then abs = { [0] = 0 }; acct._abs_urls = abs end
  local full = abs[url]
  if full then
    url = full
  elseif not urls.is_absolute(url) then
    if not acct._base then error("request: url '" .. url .. "' is relative and the integration has no base_url", 3) end
    full = urls.join(acct._base, url)
    if abs[0] >= 256 then abs = { [0] = 0 }; acct._abs_urls = abs end
    abs[url] = full
    abs[0] = abs[0] + 1
    url = full
  end
  if opts.query ~= nil then
    if type(opts.query) ~= "table" then error("request: query must be a table", 3) end
    url = urls.add_query(url, urls.encode_pairs(opts.query, "query", "query"))
  end

  local body, ctype = nil, nil
  local nbody = (opts.json ~= nil and 1 or 0) + (opts.form ~= nil and 1 or 0) + (opts.body ~= nil and 1 or 0)
  if nbody > 1 then error("request: give only one of json, form and body", 3) end
  if opts.json ~= nil then
    local err
    body, err = cjson.encode(opts.json)
    if not body then error("request: json cannot be encoded: " .. tostring(err), 3) end
    ctype = "Content-Type: application/json"
  elseif opts.form ~= nil then
    if type(opts.form) ~= "table" then error("request: form must be a table", 3) end
    body = urls.encode_pairs(opts.form, "form", "form")
    ctype = "Content-Type: application/x-www-form-urlencoded"
  elseif opts.body ~= nil then
    if type(opts.body) ~= "string" then error("request: body must be a string", 3) end
    body = opts.body
    ctype = "Content-Type:" -- no type unless the caller gives one
  end
  if opts.headers ~= nil and type(opts.headers) ~= "table" then error("request: headers must be a table", 3) end

  local timeout = opts.timeout
  if timeout ~= nil and (type(timeout) ~= "number" or timeout <= 0) then error("request: timeout must be a positive number", 3) end
  local follow = opts.follow
  if follow == true then follow = 5 end
  if follow ~= nil and follow ~= false and (type(follow) ~= "number" or follow < 0) then
    error("request: follow must be true, false or a number of redirects", 3)
  end

  -- every field finalize() sets is in the constructor, so the table is sized
  -- once (adding keys later rehashes it)
  local req = {
    method = method, _account = acct, _url_noauth = url,
    timeout = timeout or acct._timeout, connect_timeout = acct._connect_timeout,
    url = url, header_lines = false, _src_lines = false, _token = false, _wire = false,
  }
  if body then req.body = body end
  if acct._ca_file then req.ca_file = acct._ca_file end
  if follow then req.follow = follow end
  if opts.max_body then req.max_body = opts.max_body end
  if opts.decompress ~= nil and type(opts.decompress) ~= "boolean" then error("request: decompress must be a boolean", 3) end
  if opts.decompress == false then req.decompress = false end -- the raw body; no Accept-Encoding
  local rules = opts.retry == nil and acct.integration.retry or retry.rules(acct, opts.retry)
  if rules then req._retry = rules end
  -- static auth and nothing to follow or retry: send() and all() can take
  -- their short path (a field that is always there: reading it never
  -- reaches the __index function)
  req._plain = not follow and not rules and not acct._ensure_token
  if opts.headers or ctype then
    -- "Name:" with no value makes curl leave out a header it would add itself
    -- (a form Content-Type for any body, "Expect: 100-continue" for big ones)
    local extra = {}
    if ctype then extra[1] = ctype end
    if body then extra[#extra + 1] = "Expect:" end
    local own, drop = request_headers(opts.headers, extra)
    if not own then return nil, drop end
    req._own_lines, req._drop = own, drop
  end
  setmetatable(req, RequestMT)
  local ok, err = finalize(req, acct)
  if not ok then return nil, err end
  return req
end

local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }

-- Wraps a failure of the engine into an error naming the request, not its
-- secrets.
function M.fail(req, code, msg, extra)
  local acct = rawget(req, "_account")
  return nil, errors.new(code, acct:_redact(("%s %s: %s"):format(req.method, urls.safe_url(req.url), msg)), extra)
end
local fail = M.fail

-- A stand-in request for the error of one redirect hop.
local function spec_for_error(req, spec)
  return setmetatable({ method = spec.method, url = spec.url, _account = rawget(req, "_account"),
    header_lines = spec.header_lines }, RequestMT)
end

-- Follows redirects when the request asked for it. Auth and request
-- parameter headers go only to the origin the request was made for.
local function follow_redirects(req, res)
  local hops, max = 0, req.follow
  local spec = req
  local origin = urls.origin(req.url)
  local cross = false
  while REDIRECT[res.status] and res.redirect_url do
    if hops >= max then
      return fail(req, "too_many_redirects", ("more than %d redirects"):format(max), { status = res.status })
    end
    hops = hops + 1
    local url = res.redirect_url
    if urls.origin(url) ~= origin then cross = true end
    local method, body = spec.method, spec.body
    if res.status == 303 or ((res.status == 301 or res.status == 302) and method == "POST") then
      method, body = (method == "HEAD" and "HEAD" or "GET"), nil
    end
    local lines = rawget(req, "header_lines")
    if cross then lines = rawget(req, "_own_lines") or {} end
    spec = {
      method = method, url = url, body = body, header_lines = lines, timeout = req.timeout,
      connect_timeout = req.connect_timeout, ca_file = req.ca_file, max_body = req.max_body,
      decompress = req.decompress,
    }
    local r, code, msg = engine:perform(spec)
    if not r then return fail(spec_for_error(req, spec), code, msg) end
    res = r
  end
  res.redirects = hops
  return res
end

--- What happens after a reply: on a status in refresh.on_status, one
-- refresh and one retry (token accounts); redirects when asked. Used by
-- send() and by the handles of start()/all().
function M.complete(req, res)
  local acct = rawget(req, "_account")
  if acct._ensure_token and acct.integration.refresh.on_status[res.status] then
    local ok, err = require("connkit.tokens").renew(acct, true, rawget(req, "_token"))
    if not ok then return nil, err end
    ok, err = finalize(req, acct)
    if not ok then return nil, err end
    local code, msg
    res, code, msg = engine:perform(rawget(req, "_wire"))
    if not res then return fail(req, code, msg) end
  end
  if rawget(req, "follow") and REDIRECT[res.status] then return follow_redirects(req, res) end
  return res
end

--- Brings the request up to date with the account's token (fetching or
-- refreshing it first when it is due). Returns true, or nil and an error.
function M.ready(req)
  local acct = rawget(req, "_account")
  if acct._ensure_token then
    local ok, err = acct:_ensure_token()
    if not ok then return nil, err end
  end
  if rawget(req, "_src_lines") ~= acct._lines then return finalize(req, acct) end
  return true
end

--- One attempt: the token brought up to date, the transfer, and what
-- follows a reply (refresh and retry on on_status, redirects).
function M.attempt(req)
  local ok, err = M.ready(req)
  if not ok then return nil, err end
  local res, code, msg = engine:perform(rawget(req, "_wire"))
  if not res then return fail(req, code, msg) end
  if rawget(req, "_account")._ensure_token or rawget(req, "follow") then return M.complete(req, res) end
  return res
end

--- After attempt number `attempt` gave (res | nil, err): more attempts
-- while the retry rules ask for them (waiting in between), then the outcome
-- with `attempts` set.
function M.settle(req, res, err, attempt)
  local rules = rawget(req, "_retry")
  while rules do
    local wait = retry.delay(rules, req.method, res, err, attempt)
    if not wait then break end
    core.sleep(wait)
    attempt = attempt + 1
    res, err = M.attempt(req)
  end
  -- (a response says 1 through its metatable: setting it would grow the table)
  if res then
    if attempt ~= 1 then res.attempts = attempt end
  elseif err then
    err.attempts = attempt
  end
  return res, err
end

--- Sends the request and waits for the reply, retrying per the retry rules.
-- @return response, or nil and an error (both carry `attempts`)
function Request:send()
  local acct = self._account
  if self._plain and self._src_lines == acct._lines then
    -- the common case, kept short: static auth, nothing to follow or retry
    local res, code, msg = perform(self._wire)
    if res then return res end -- (attempts = 1 comes from the metatable)
    local _, err = fail(self, code, msg)
    err.attempts = 1
    return nil, err
  end
  local res, err = M.attempt(self)
  return M.settle(self, res, err, 1)
end

M.engine = engine
M.send = Request.send
return M
