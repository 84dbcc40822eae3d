--- connkit: define an API integration once, then call it with the right
-- credentials every time. See API.md for the contract.
-- @module connkit
local core = require "connkit.core"
local integration = require "connkit.integration"
local account = require "connkit.account"
local request = require "connkit.http.request"
local errors = require "connkit.errors"
local check = require "connkit.check"

local connkit = {
  _VERSION = "connkit 0.1.0",
  curl_version = core.curl_version,
  libssh2_version = core.libssh2_version,
}

--- Validates a definition; returns an integration (see API.md section 1).
connkit.integration = integration.new

--- Reads a definition from a JSON or Lua file.
connkit.load = integration.load

connkit.errors = errors

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

--- Builds a request without sending it (API.md section 3).
function Account:prepare(opts)
  check_self(self, "prepare")
  return request.prepare(self, opts)
end

--- Makes a request and waits for the reply: response, or nil and an error.
function Account:request(opts)
  check_self(self, "request")
  local req, err = request.prepare(self, opts)
  if not req then return nil, err end
  return req:send()
end

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
connkit.poll = async.poll
connkit.all = async.all
connkit.pollfd = async.pollfd
connkit.timeout = async.timeout

-- Transports (API.md section 7): which one a request made here would use,
-- and an override.
local transport = require "connkit.transport"
connkit.transport = transport.name
connkit.use_transport = transport.use

return connkit
