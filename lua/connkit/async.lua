--- Non-blocking requests: req:start() returns a handle, connkit.poll drives
-- every transfer of the engine, connkit.all runs many with a concurrency
-- limit. A handle applies the same rules as send(): one refresh and retry
-- on refresh.on_status, redirects when asked, and the retry rules (waiting
-- for a retry does not block: the next attempt starts on a later done()).
-- @module connkit.async
local core = require "connkit.core"
local errors = require "connkit.errors"
local request = require "connkit.request"
local retry = require "connkit.retry"

local engine = request.engine
local Request = request.Request

local M = {}

local Handle = {}
Handle.__index = Handle
Handle.__name = "connkit.handle"
M.Handle = Handle

-- Ends the handle with a result; `attempts` says how many were made.
local function finish(h, res, err)
  if res then res.attempts = h._attempt elseif err then err.attempts = h._attempt end
  h._res, h._err, h._final = res, err, true
end

-- One attempt is over: retry later, or finish.
local function settle(h, res, err)
  local rules = rawget(h.request, "_retry")
  local d = rules and retry.delay(rules, h.request.method, res, err, h._attempt)
  if d then
    h._retry_at = core.now() + d
  else
    finish(h, res, err)
  end
end

local function attempt(h)
  h._attempt = h._attempt + 1
  local ok, err = request.ready(h.request)
  if not ok then return finish(h, nil, err) end
  local xfer, code, msg = engine:start(h.request)
  if xfer then
    h._xfer = xfer
  else
    settle(h, request.fail(h.request, code, msg))
  end
end

--- Starts the request without waiting; drive it with connkit.poll and ask
-- handle:done().
function Request:start()
  local h = setmetatable({ request = self, _attempt = 0 }, Handle)
  attempt(h)
  return h
end

--- True once the request has finished (or failed, or was cancelled).
function Handle:done()
  if self._final then return true end
  local xfer = self._xfer
  if xfer then
    if not xfer:done() then return false end
    self._xfer = nil
    local res, code, msg = xfer:result()
    local err
    if res then
      res, err = request.complete(self.request, res)
    else
      res, err = request.fail(self.request, code, msg)
    end
    settle(self, res, err)
    return self._final == true
  end
  if self._retry_at and core.now() >= self._retry_at then
    self._retry_at = nil
    attempt(self)
  end
  return self._final == true
end

--- The response, or nil and an error; waits if the request is not done.
function Handle:result()
  while not self:done() do
    if self._xfer then
      self._xfer:result() -- waits for this transfer, driving the others too
    elseif self._retry_at then
      engine:poll(math.max(0, math.min(0.05, self._retry_at - core.now())))
      core.sleep(math.max(0, math.min(0.05, self._retry_at - core.now())))
    end
  end
  return self._res, self._err
end

--- Stops the request; its result is then nil and an error with code "cancelled".
function Handle:cancel()
  if self._final then return end
  if self._xfer then self._xfer:cancel() end
  self._xfer, self._retry_at = nil, nil
  finish(self, nil, errors.new("cancelled", "the request was cancelled"))
end

--- Drives every started transfer; waits up to `timeout` seconds for activity
-- (0: never blocks). Returns how many finished.
function M.poll(timeout)
  if timeout ~= nil and type(timeout) ~= "number" then error("poll: timeout must be a number", 2) end
  return engine:poll(timeout or 0)
end

--- Runs prepared requests with up to `concurrency` in flight; returns
-- { { res = ..., err = ... }, ... } in the order of the input.
function M.all(reqs, opts)
  if type(reqs) ~= "table" then error("all: requests must be a list", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("all: options must be a table", 2) end
  local n = opts.concurrency or 8
  if type(n) ~= "number" or n < 1 then error("all: concurrency must be a positive number", 2) end
  for i, req in ipairs(reqs) do
    if getmetatable(req) == nil or rawget(req, "_account") == nil then
      error("all: item " .. i .. " is not a prepared request", 2)
    end
  end
  local results, running, nexti, total, inflight = {}, {}, 1, #reqs, 0
  while nexti <= total or inflight > 0 do
    while inflight < n and nexti <= total do
      running[nexti] = reqs[nexti]:start()
      inflight = inflight + 1
      nexti = nexti + 1
    end
    local finished, transferring = false, false
    for i, h in pairs(running) do
      if h:done() then
        results[i] = { res = h._res, err = h._err }
        running[i] = nil
        inflight = inflight - 1
        finished = true
      elseif h._xfer then
        transferring = true
      end
    end
    if not finished and inflight > 0 then
      if transferring then engine:poll(0.05) else core.sleep(0.01) end
    end
  end
  return results
end

return M
