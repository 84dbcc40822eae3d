--- connkit: define an API integration once, then call it with the right
-- credentials every time. This is the module `require "connkit"` returns.
--
-- Where to start in this reference (the README is the guide, with every
-- option and error code):
--
--  * connkit (this page): integration, load, all, poll, pollfd, timeout,
--    transport, use_transport, and account:request / prepare / get / post /
--    put / patch / delete / head;
--  * connkit.integration: the definition and integration:account;
--  * connkit.account: the account methods (token, refresh, status, verify,
--    exchange, pages, items, sftp, id_token_claims); the OAuth ones are in
--    connkit.auth.oauth2 (authorize_url, finish_authorization, revoke) and
--    connkit.auth.login (login, login_device);
--  * connkit.http.request, connkit.http.async, connkit.http.response:
--    prepared requests, handles and replies;
--  * connkit.store: the token stores (memory, file, shared, redis);
--  * connkit.errors: the error values; connkit.jsonpath: the paths the
--    definitions use; connkit.auth.jwt and connkit.auth.jwk: JWT signing and
--    verification, keys;
--  * connkit.sftp: SFTP sessions and files; connkit.cli: the command.
--
-- The other modules are internal: documented for contributors, not a
-- stable interface.
-- @module connkit
local core = require "connkit.core"
local integration = require "connkit.integration"
local account = require "connkit.account"
local request = require "connkit.http.request"
local errors = require "connkit.errors"
local check = require "connkit.check"

local connkit = {
  --- The version string ("connkit 0.1.0").
  _VERSION = "connkit 0.1.0",
  --- The libcurl version the C module runs with, as a string ("7.88.1").
  curl_version = core.curl_version,
  --- The libssh2 version the C module runs with, as a string ("1.10.0").
  libssh2_version = core.libssh2_version,
}

--- Validates a definition and returns an integration (README "Integrations").
-- The whole definition is checked once and every template compiled.
-- @function integration
-- @tparam table def the definition: name, key, auth ("oauth2" | "api_token" |
--   "basic" | "custom_token" | "jwt" | "sftp" | "none"), and as the auth type
--   needs: base_url, parameters, oauth2, custom_token, jwt, sftp, auth_token,
--   request_parameters, retry, refresh, rate_limit, pagination, verify, tls,
--   timeout, connect_timeout, allowed_origins, allow_insecure_http, hooks
--   (on_request, on_response, on_refresh_error), description
-- @treturn connkit.integration.Integration the integration
-- @raise an error naming the field for a missing or bad field, an unknown
--   auth type, a `{name}` that is not a declared parameter or built-in, or a
--   template that does not parse
-- @usage local crm = connkit.integration { name = "Acme", key = "acme",
--   auth = "api_token", base_url = "https://api.acme.test" }
connkit.integration = integration.new

--- Reads a definition from a JSON or Lua file and validates it.
-- @function load
-- @tparam string path a .json file, or a .lua file returning the table (it
--   sees only os.getenv, string, table, math and the basic functions)
-- @treturn connkit.integration.Integration the integration
-- @raise when the file cannot be read or parsed, or the definition is bad
connkit.load = integration.load

--- The error values (connkit.errors): `err.code`, `err.message`,
-- `tostring(err)`; connkit.errors.is(v) tells one apart.
connkit.errors = errors

--- The token stores (connkit.store), loaded on first use:
-- connkit.store.memory(), .file(dir, opts), .shared(dict, opts),
-- .redis(opts).
-- Stores are loaded on first use.
connkit.store = setmetatable({}, {
  __index = function(t, k)
    local stores = require "connkit.store"
    for name, v in pairs(stores) do rawset(t, name, v) end
    return rawget(t, k)
  end,
})

local Account = account.Account
local send = require("connkit.http.attempt").send -- called directly: a request's __index is a function

-- acct.get(url) instead of acct:get(url) would fail deep inside connkit
local function check_self(self, name)
  if getmetatable(self) ~= Account then
    check.raise(("%s: call it as account:%s(...), with a colon"):format(name, name))
  end
end

--- Builds a request without sending it: templates filled, auth and request
-- parameters applied, the body encoded. `req.method`, `req.url` and
-- `req.headers` are the final request; `req:send()` sends it, `req:start()`
-- starts it without waiting (connkit.http.request, connkit.http.async).
-- @tparam table opts the request options (README "Requests"): method, url,
--   vars, query, headers, json | body | form | multipart, timeout, follow,
--   retry, rate_limit, max_body, auth, decompress, output | on_data
-- @treturn[1] connkit.http.request.Request the prepared request
-- @return[2] nil
-- @treturn[2] connkit.errors.Error an error (e.g. code "template": a
--   placeholder that cannot be filled)
-- @raise for an unknown option or one of the wrong type, naming it
function Account:prepare(opts)
  check_self(self, "prepare")
  return request.prepare(self, opts)
end

--- Makes a request and waits for the reply. A non-2xx reply is a response,
-- not an error; the token is fetched or refreshed as needed, the refresh
-- rules, retries and redirects (with `follow`) apply.
-- @tparam table opts the request options, as for prepare
-- @treturn[1] connkit.http.response.Response the response
-- @return[2] nil
-- @treturn[2] connkit.errors.Error an error when there is no reply to give
--   (codes "timeout", "connect", "dns", "tls", "network", "too_large",
--   "rate_limited", "template", token errors such as "invalid_grant")
-- @raise for an unknown option or one of the wrong type, naming it
-- @usage local res, err = acct:request { url = "/contacts/{id}", vars = { id = 42 } }
function Account:request(opts)
  check_self(self, "request")
  local req, err = request.prepare(self, opts)
  if not req then return nil, err end
  return req:send()
end

--- A GET request: account:request with method "GET" and this url.
-- A URL with no placeholder and no options is prepared once and reused.
-- @function Account:get
-- @tparam string url absolute, or relative to base_url; may hold `{name}`
-- @tparam[opt] table opts the other request options (not method or url)
-- @treturn[1] connkit.http.response.Response the response
-- @return[2] nil
-- @treturn[2] connkit.errors.Error an error, as for request
-- @raise for a bad option, or when called with a dot instead of a colon

--- A POST request (see Account:get).
-- @function Account:post
-- @tparam string url absolute, or relative to base_url
-- @tparam[opt] table opts the other request options (json, body, form,
--   multipart, ...)
-- @treturn[1] connkit.http.response.Response the response
-- @return[2] nil
-- @treturn[2] connkit.errors.Error an error, as for request

--- A PUT request (see Account:get).
-- @function Account:put
-- @tparam string url absolute, or relative to base_url
-- @tparam[opt] table opts the other request options
-- @treturn[1] connkit.http.response.Response the response
-- @return[2] nil
-- @treturn[2] connkit.errors.Error an error, as for request

--- A PATCH request (see Account:get).
-- @function Account:patch
-- @tparam string url absolute, or relative to base_url
-- @tparam[opt] table opts the other request options
-- @treturn[1] connkit.http.response.Response the response
-- @return[2] nil
-- @treturn[2] connkit.errors.Error an error, as for request

--- A DELETE request (see Account:get).
-- @function Account:delete
-- @tparam string url absolute, or relative to base_url
-- @tparam[opt] table opts the other request options
-- @treturn[1] connkit.http.response.Response the response
-- @return[2] nil
-- @treturn[2] connkit.errors.Error an error, as for request

--- A HEAD request (see Account:get); the response has no body.
-- @function Account:head
-- @tparam string url absolute, or relative to base_url
-- @tparam[opt] table opts the other request options
-- @treturn[1] connkit.http.response.Response the response
-- @return[2] nil
-- @treturn[2] connkit.errors.Error an error, as for request

for _, m in ipairs({ "get", "post", "put", "patch", "delete", "head" }) do
  local M = m:upper()
  local CACHE = "_prepared_" .. m
  Account[m] = function(self, url, opts)
    if getmetatable(self) ~= Account then check_self(self, m) end
    if opts == nil then
      -- no options: the request for a URL without placeholders is prepared
      -- once and reused (send re-applies the account's lines when its token
      -- changes); at most 64 URLs per method and account are kept
      local cache = self[CACHE] -- (Account's __index is a table: no call)
      local req = cache and cache[url]
      if req then return send(req) end
      if type(url) == "string" and not url:find("{", 1, true) then
        local err
        req, err = request.prepare(self, { method = M, url = url })
        if not req then return nil, err end
        -- (the count lives at [0]: no URL string can clash with it)
        if not cache or cache[0] >= 64 then cache = { [0] = 0 }; rawset(self, CACHE, cache) end
        cache[url] = req
        cache[0] = cache[0] + 1
        return req:send()
      end
    end
    local o = { method = M, url = url }
    if opts ~= nil then
      if type(opts) ~= "table" then check.raise(("%s: options must be a table, not a %s"):format(m, type(opts))) end
      for k, v in pairs(opts) do
        if k == "method" or k == "url" then
          check.raise(("%s: option '%s' is given by the call itself: %s(url, opts)"):format(m, k, m))
        end
        o[k] = v
      end
    end
    local req, err = request.prepare(self, o)
    if not req then return nil, err end
    return req:send()
  end
end

local async = require "connkit.http.async"

--- Drives every started transfer (req:start() handles, token fetches,
-- retries that are due); call it every frame or tick, or when pollfd() is
-- readable (connkit.http.async).
-- @function poll
-- @tparam[opt] number timeout seconds to wait for activity (0 or nil:
--   never blocks)
-- @treturn integer how many transfers finished
-- @raise when timeout is not a number of seconds
connkit.poll = async.poll

--- Runs prepared requests with up to `concurrency` in flight and waits for
-- all of them (connkit.http.async).
-- @function all
-- @tparam {connkit.http.request.Request,...} reqs prepared requests
-- @tparam[opt] table opts `concurrency` (a count, default 8)
-- @treturn table `{ { res = response, err = error }, ... }` in the order of
--   the input (each has res or err)
-- @raise when reqs is not a list of prepared requests or an option is bad
connkit.all = async.all

--- A file descriptor that is readable when connkit has work, for a host's
-- event loop (luv, cqueues, Neovim): call connkit.poll(0) when it is, and
-- when connkit.timeout() runs out.
-- @function pollfd
-- @treturn integer the file descriptor
connkit.pollfd = async.pollfd

--- The seconds until connkit.poll(0) must run at the latest (0: now).
-- @function timeout
-- @treturn number|nil seconds, or nil when nothing waits for a time
connkit.timeout = async.timeout

-- Transports (API.md section 7): which one a request made here would use,
-- and an override.
local transport = require "connkit.transport"

--- The transport a request made here would use (README "OpenResty").
-- @function transport
-- @treturn[1] string "curl", or "ngx" (inside OpenResty, in a phase where
--   cosockets work)
-- @return[2] nil where no request can be made (an nginx phase without
--   cosockets)
-- @treturn[2] string why
connkit.transport = transport.name

--- Overrides the choice of transport for this Lua state.
-- @function use_transport
-- @tparam string name "curl", "ngx", or "auto" (chosen per call site again)
-- @raise for another name, or where that transport cannot work (e.g. "ngx"
--   outside OpenResty)
connkit.use_transport = transport.use

return connkit
