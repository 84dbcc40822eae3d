--- Non-blocking requests: req:start() returns a handle, connkit.poll drives
-- every transfer of the engine, connkit.all runs many with a concurrency
-- limit. A handle applies the same rules as send(): the token fetched or
-- renewed first when due, one refresh and retry on refresh.on_status,
-- redirects when asked, and the retry rules. Waiting for a token reply or
-- for a retry does not block: the next step happens on a later done() or
-- connkit.poll. (Following a redirect is still a blocking transfer.) The
-- request's timeout covers all of it: a handle past its deadline ends with
-- code "timeout", also while it waits for a token another caller shares.
-- @module connkit.http.async
local core = require "connkit.core"
local errors = require "connkit.errors"
local request = require "connkit.http.request"
local attempt = require "connkit.http.attempt"
local deadlines = require "connkit.http.deadline"
local tokens = require "connkit.auth.tokens"
local check = require "connkit.check"
local transport = require "connkit.transport"
local threads = require "connkit.http.threads"
local hooks = require "connkit.hooks"
local rate_limit = require "connkit.http.rate_limit"

local POLL_OPTIONS = { timeout = "wait" }

local now = core.now
local Request = request.Request

local M = {}

local Handle = {}
Handle.__index = Handle
Handle.__name = "connkit.handle"
M.Handle = Handle

-- Handles with work only Lua can do: waiting for a token (a renewal task)
-- or for the time of a retry. connkit.poll steps them, so a handle moves on
-- even when nobody asks it done().
local pending = {}

-- Ends the handle with a result; `attempts` says how many were made (the
-- retry rules' attempts and each refresh and retry).
local function finish(h, res, err)
  attempt.count(res, err, h._attempt + h._extra)
  h._res, h._err, h._final = res, err, true
  h._task, h._xfer, h._retry_at = nil, nil, nil
  pending[h] = nil
  hooks.request_done(h.request._account, h.request, res, err)
end

-- One attempt is over: retry later, or finish.
local function settle(h, res, err)
  local d = h._deadline and deadlines.retry_wait(h.request, res, err, h._attempt, h._deadline)
  if d then
    h._retry_at = core.now() + d
    pending[h] = true
  else
    finish(h, res, err)
  end
end

-- The request is up to date: its transfer starts.
local function transmit(h)
  local t = transport.curl
  if h._gated then
    h._gated = nil
  elseif rawget(h.request, "_rate") then
    -- the rate limit's wait is a timed step like a retry's (see advance)
    local wait, rerr = rate_limit.gate(h.request, h._deadline)
    if not wait then return finish(h, nil, rerr) end
    if wait > 0 then
      h._gated, h._retry_at = true, now() + wait
      pending[h] = true
      return
    end
  end
  local w = rawget(h.request, "_wire")
  if h._deadline then
    local err
    w, err = deadlines.spec_until(t, h.request, h._deadline)
    if not w then return settle(h, nil, err) end
  end
  local acct = h.request._account
  -- (the account's hooks: on_request now, on_response when it is over)
  local call = acct._hooks and hooks.begin(acct, h.request, "api", h._attempt + h._extra, t.name)
  local xfer, code, msg = t.start(w)
  if xfer then
    h._xfer, h._call = xfer, call
  else
    local _, err = request.fail(h.request, code, msg)
    if call then hooks.finish(call, nil, err) end
    settle(h, nil, err)
  end
end

-- The transfer of the handle is over (or cancelled): on_response.
local function transfer_over(h, res, err)
  local call = h._call
  if call then
    h._call = nil
    hooks.finish(call, res, err)
  end
end

local function await(h, task, after)
  h._task, h._after = task, after
  pending[h] = true
end

local function next_attempt(h)
  h._attempt = h._attempt + 1
  h._refreshed, h._nonced = false, nil
  local ok, x = attempt.ready_start(h.request, h._deadline)
  if ok == false then return await(h, x, attempt.ready_after) end
  if not ok then return finish(h, nil, x) end
  transmit(h)
end

-- The transfer gave a reply (or failed): one refresh and retry when the
-- status asks for it, else redirects when asked, then the retry rules.
local function replied(h, res, err)
  local req = h.request
  local refused, rerr = false, nil
  if res and not h._refreshed then refused, rerr = attempt.refused(req, res) end
  if refused == nil then return settle(h, nil, rerr) end
  if refused then
    h._refreshed = true
    local ok, x = attempt.refresh_start(req, h._deadline)
    if ok == false then return await(h, x, attempt.refreshed) end
    if not ok then return settle(h, nil, x) end
    h._extra = h._extra + 1
    return transmit(h)
  end
  if res then res, err = attempt.follow(req, res, h._deadline, h._attempt + h._extra) end
  settle(h, res, err)
end

-- Moves the handle on as far as it can go without waiting.
local function advance(h)
  local task = h._task
  if task then
    if not task:done() then
      if h._deadline and now() >= h._deadline then
        -- the token is late: this handle stops waiting; the renewal goes on
        finish(h, deadlines.out_of_time(h.request,
          h._after == attempt.refreshed and "the token was renewed" or "the token came"))
      end
      return
    end
    h._task = nil
    pending[h] = nil
    local ok, err = h._after(h.request, task)
    if not ok then
      if h._after == attempt.ready_after then return finish(h, nil, err) end
      return settle(h, nil, err)
    end
    if h._after == attempt.refreshed then h._extra = h._extra + 1 end
    return transmit(h)
  end
  local xfer = h._xfer
  if xfer then
    if not xfer:done() then return end
    h._xfer = nil
    local res, code, msg = xfer:result()
    if res and rawget(h.request, "_rate") then rate_limit.observe(h.request, res) end
    if res then
      transfer_over(h, res)
      if rawget(h.request, "_dpop") and require("connkit.auth.dpop").observe(h.request.url, res) and not h._nonced then
        h._nonced = true -- (RFC 9449 9: once more with the server's nonce)
        return transmit(h)
      end
      return replied(h, res)
    end
    local _, err = request.fail(h.request, code, msg)
    transfer_over(h, nil, err)
    return replied(h, nil, err)
  end
  if h._retry_at and core.now() >= h._retry_at then
    h._retry_at = nil
    pending[h] = nil
    if h._gated then return transmit(h) end -- the rate limit's wait is over
    next_attempt(h)
  end
end

-- advance(), for done() and poll(): a programming error raised on the way
-- (by a hook or a store while the token was fetched, a template) ends the
-- handle and is raised again by done() and result().
local function step(h)
  if h._final then return end
  local ok, err = pcall(advance, h)
  if not ok then
    finish(h, nil, nil)
    h._raise = err
  end
end

-- A plain request (static auth, nothing to follow or retry, header lines up
-- to date; what connkit.all runs as a batch in C) over the curl transport is
-- one transfer and nothing else: its handle is that transfer, with done(),
-- result() and cancel() in C (see csrc/http_async.c) and the outcome a
-- Handle would give (the error from request.fail, attempts = 1).
local function plain_failure(req, code, msg)
  local _, err = request.fail(req, code, msg)
  err.attempts = 1
  return err
end

local function plain_cancelled()
  local err = errors.new("cancelled", "the request was cancelled")
  err.attempts = 1
  return err
end

-- (result() calls this after an interrupt: the interpreter's hook acts in Lua)
local function plain_again(h) return h:result() end

local start_plain = transport.curl.engine:plain_starter(plain_failure, plain_cancelled, plain_again)

-- A plain request that could not start: over at once.
local Failed = {}
Failed.__index = Failed
Failed.__name = "connkit.handle"
--- A handle whose request failed before it started: done() at once.
-- @treturn boolean true
function Failed.done() return true end
--- The failure.
-- @return nil
-- @treturn connkit.errors.Error the error
function Failed:result() return nil, self._err end
--- Nothing to stop.
function Failed.cancel() end

--- Starts the request without waiting; drive it with connkit.poll and ask
-- handle:done(). A token that must be fetched first is fetched as part of
-- the handle's work: start() returns once its request is under way.
-- (Inside OpenResty: a light thread, see connkit.http.threads.)
-- @treturn table the handle: done(), result(), cancel()
function Request:start()
  if transport.curl_only then
    if self._plain and self._src_lines == self._account._lines then
      local h, code, msg = start_plain(self._wire, self)
      if h then return h end
      return setmetatable({ _err = plain_failure(self, code, msg) }, Failed)
    end
  else
    local t = transport.current()
    if t.spawn then return threads.start(self, t) end
  end
  local h = setmetatable({ request = self, _attempt = 0, _extra = 0 }, Handle)
  -- a plain request is one transfer, bounded by its own timeout
  if not self._plain then h._deadline = now() + self.timeout end
  next_attempt(h)
  return h
end

--- True once the request has finished (or failed, or was cancelled);
-- moves it on (token reply, retry) without waiting.
-- @treturn boolean whether the request is over
-- @raise the error a callback (on_data, a hook) raised
function Handle:done()
  step(self)
  if self._raise then error(self._raise, 0) end
  return self._final == true
end

--- The response, or nil and an error. Before done() this waits, driving
-- the engine (every transfer of it) until the request is over, its token
-- fetch included.
-- @treturn[1] connkit.http.response.Response the response
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function Handle:result()
  while not self:done() do
    if self._task then
      deadlines.wait_task(self._task, self._deadline)
    elseif self._xfer then
      self._xfer:result() -- waits for this transfer, driving the others too
    elseif self._retry_at then
      local wait = math.max(0, math.min(0.05, self._retry_at - core.now()))
      local t = transport.curl
      if t.pending() > 0 then t.poll(wait) else t.sleep(wait) end
    end
  end
  return self._res, self._err
end

--- Stops the request; its result is then nil and an error with code
-- "cancelled". A token fetch it waited for goes on for the account (other
-- requests may wait for it; connkit.poll drives it).
function Handle:cancel()
  if self._final then return end
  if self._xfer then self._xfer:cancel() end
  local err = errors.new("cancelled", "the request was cancelled")
  transfer_over(self, nil, err)
  finish(self, nil, err)
end

-- The keys of a set, so that stepping may change the set.
local function keys(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  return list
end

--- Drives every started transfer; waits up to `timeout` seconds for activity
-- (0: never blocks). Then moves on what waited for a token reply (the
-- renewal, the handles that need its token) and retries that are due.
-- Returns how many transfers finished.
-- @tparam[opt] number timeout seconds to wait for activity (0 or nil: none)
-- @treturn integer how many transfers finished
-- @raise when timeout is not a number of seconds
function M.poll(timeout)
  -- (0, the event loops' call, needs no check)
  if timeout ~= nil and timeout ~= 0 then check.options("connkit.poll", { timeout = timeout }, POLL_OPTIONS) end
  local t = transport.curl_only and transport.curl or (transport.choose() or transport.curl)
  local n = t.poll(timeout or 0)
  if next(tokens.active) then
    for _, task in ipairs(keys(tokens.active)) do task:done() end
  end
  if next(pending) then
    for _, h in ipairs(keys(pending)) do step(h) end
  end
  return n
end

-- The earliest time (core.now) at which a handle's Lua-side work is due:
-- a retry's wait ends, or a wait for a token reaches its deadline; or nil.
local function lua_due()
  local due
  for h in pairs(pending) do
    local at = h._retry_at or (h._task and h._deadline)
    if at and (due == nil or at < due) then due = at end
  end
  return due
end

--- The seconds until connkit.poll(0) must run at the latest (0: now), or
-- nil when nothing waits for a time (idle, or only for sockets, which
-- connkit.pollfd() covers): the engine's own timer or a handle's due work.
-- @treturn number|nil the seconds, or nil
function M.timeout()
  local t = transport.curl.engine:timeout()
  local due = lua_due()
  if due then
    local left = math.max(0, due - now())
    if t == nil or left < t then t = left end
  end
  return t
end

--- A file descriptor that is readable when the engine has work: hand it to
-- the host's event loop and call connkit.poll(0) when it is (and when
-- connkit.timeout() runs out). From the first call the engine is event
-- driven (see csrc/http_poll.c).
-- @treturn integer the file descriptor
function M.pollfd()
  return transport.curl.engine:pollfd()
end

M.all = require("connkit.http.async_batch").all

return M
