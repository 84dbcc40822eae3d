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
local check = require "connkit.check"

local engine = request.engine
local Request = request.Request
local RequestMT = request.RequestMT

local M = {}

local Handle = {}
Handle.__index = Handle
Handle.__name = "connkit.handle"
M.Handle = Handle

-- Ends the handle with a result; `attempts` says how many were made.
local function finish(h, res, err)
  if res then
    if h._attempt ~= 1 then res.attempts = h._attempt end -- (else 1 from the metatable)
  elseif err then
    err.attempts = h._attempt
  end
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
  local xfer, code, msg = engine:start(rawget(h.request, "_wire"))
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

local POLL_OPTIONS = { timeout = "wait" }
local ALL_OPTIONS = { concurrency = "count" }

--- Drives every started transfer; waits up to `timeout` seconds for activity
-- (0: never blocks). Returns how many finished.
function M.poll(timeout)
  if timeout ~= nil then check.options("connkit.poll", { timeout = timeout }, POLL_OPTIONS) end
  return engine:poll(timeout or 0)
end

--- Runs prepared requests with up to `concurrency` in flight; returns
-- { { res = ..., err = ... }, ... } in the order of the input. The
-- transfers run in C on the shared engine; what follows a reply (a refresh
-- on 401/403, redirects, retries) is then done request by request.
function M.all(reqs, opts)
  if type(reqs) ~= "table" then check.raise("connkit.all: requests must be a list, not a " .. type(reqs)) end
  local n = check.options("connkit.all", opts, ALL_OPTIONS).concurrency or 8
  local total = #reqs
  -- A plain request (static auth, nothing to follow or retry) whose header
  -- lines are up to date goes to the engine as it is and is done with its
  -- reply; any other is brought up to date first (a due token fetched or
  -- refreshed once) and finished after its transfer.
  local slow, failed = false, nil
  for i = 1, total do
    local req = reqs[i]
    local acct = type(req) == "table" and req._account
    if not (acct and req._plain and req._src_lines == acct._lines) then
      if not acct or getmetatable(req) ~= RequestMT then
        check.raise("connkit.all: item " .. i .. " is not a prepared request")
      end
      slow = true
      local ok, err = request.ready(req)
      if not ok then
        failed = failed or {}
        failed[i] = err
      end
    end
  end
  local list, map = reqs, nil
  if failed then -- only the ready ones run
    list, map = {}, {}
    for i = 1, total do
      if not failed[i] then list[#list + 1] = reqs[i]; map[#list] = i end
    end
  end
  local out, nfailed = engine:run(list, n)
  local results = out
  if map then
    results = {}
    for j = 1, #list do results[map[j]] = out[j] end
    for i, err in pairs(failed) do
      err.attempts = 1
      results[i] = { err = err }
    end
  end
  if slow or nfailed > 0 then
    for j = 1, #list do
      local i = map and map[j] or j
      local req, r = reqs[i], results[i]
      local res = r.res
      if not (res and req._plain) then
        local err
        if res then
          res, err = request.complete(req, res)
        else
          res, err = request.fail(req, r.code, r.message)
        end
        res, err = request.settle(req, res, err, 1)
        r.res, r.err, r.code, r.message = res, err, nil, nil
      end
    end
  end
  return results
end

return M
