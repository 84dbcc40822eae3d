--- connkit: define an API integration once, then call it with the right
-- credentials every time. See API.md for the contract.
-- @module connkit
local core = require "connkit.core"
local integration = require "connkit.integration"
local account = require "connkit.account"
local request = require "connkit.request"
local errors = require "connkit.errors"

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
local Request = request.Request
local engine = request.engine

--- Builds a request without sending it (API.md section 3).
function Account:prepare(opts)
  return request.prepare(self, opts)
end

--- Makes a request and waits for the reply: response, or nil and an error.
function Account:request(opts)
  local req, err = request.prepare(self, opts)
  if not req then return nil, err end
  return req:send()
end

for _, m in ipairs({ "get", "post", "put", "patch", "delete", "head" }) do
  local M = m:upper()
  Account[m] = function(self, url, opts)
    local o = { method = M, url = url }
    if opts ~= nil then
      if type(opts) ~= "table" then error(m .. ": options must be a table", 2) end
      for k, v in pairs(opts) do
        if k ~= "method" and k ~= "url" then o[k] = v end
      end
    end
    local req, err = request.prepare(self, o)
    if not req then return nil, err end
    return req:send()
  end
end

---------------------------------------------------------------------------
-- Non-blocking requests
---------------------------------------------------------------------------

local Handle = {}
Handle.__index = Handle
Handle.__name = "connkit.handle"

--- Starts the request without waiting; drive it with connkit.poll.
function Request:start()
  local h = setmetatable({ request = self }, Handle)
  local ok, err = request.ready(self)
  if not ok then h._err = err return h end
  local xfer, code, msg = engine:start(self)
  if not xfer then
    h._res, h._err = request.fail(self, code, msg)
  else
    h._xfer = xfer
  end
  return h
end

--- True once the request has finished (or failed, or was cancelled).
function Handle:done()
  return self._xfer == nil or self._xfer:done()
end

--- The response, or nil and an error; waits if the request is still running.
function Handle:result()
  if self._xfer then
    local res, code, msg = self._xfer:result()
    self._xfer = nil
    if res then
      self._res, self._err = request.complete(self.request, res)
    else
      self._res, self._err = request.fail(self.request, code, msg)
    end
  end
  return self._res, self._err
end

--- Stops the request; its result is then nil and an error with code "cancelled".
function Handle:cancel()
  if self._xfer then self._xfer:cancel() end
end

--- Drives every started transfer; waits up to `timeout` seconds for activity
-- (0: never blocks). Returns how many finished.
function connkit.poll(timeout)
  if timeout ~= nil and type(timeout) ~= "number" then error("poll: timeout must be a number", 2) end
  return engine:poll(timeout or 0)
end

--- Runs prepared requests with up to `concurrency` in flight; returns
-- { { res = ..., err = ... }, ... } in the order of the input.
function connkit.all(reqs, opts)
  if type(reqs) ~= "table" then error("all: requests must be a list", 2) end
  opts = opts or {}
  local n = opts.concurrency or 8
  if type(n) ~= "number" or n < 1 then error("all: concurrency must be a positive number", 2) end
  local results, running, nexti, total = {}, {}, 1, #reqs
  local inflight = 0
  while nexti <= total or inflight > 0 do
    while inflight < n and nexti <= total do
      local req = reqs[nexti]
      if getmetatable(req) == nil or rawget(req, "_account") == nil then
        error("all: item " .. nexti .. " is not a prepared request", 2)
      end
      running[nexti] = req:start()
      inflight = inflight + 1
      nexti = nexti + 1
    end
    local finished = false
    for i, h in pairs(running) do
      if h:done() then
        local res, err = h:result()
        results[i] = { res = res, err = err }
        running[i] = nil
        inflight = inflight - 1
        finished = true
      end
    end
    if not finished and inflight > 0 then engine:poll(1) end
  end
  return results
end

return connkit
