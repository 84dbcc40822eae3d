--- Light threads for the ngx transport: transfers started without
-- waiting (start, then poll and pending, as the curl engine's multi does)
-- and jobs (spawn: any function in a light thread, for the token fetches
-- req:start() must not block on), plus a sleep that yields to nginx. The
-- transfers run connkit.transport.ngx's perform; waiting is on
-- ngx.semaphore, so it yields to nginx and never blocks the worker.
-- @module connkit.transport.ngx_threads

local setmetatable, select, tostring = setmetatable, select, tostring

local M = {}

local semaphore -- ngx.semaphore, loaded on first use (it needs OpenResty)
local inflight, finished, poll_wake = 0, 0, nil

-- Wakes every light thread waiting on sema.
local function wake_all(sema)
  local n = sema:count()
  if n < 0 then sema:post(-n) end
end

local Transfer = {}
Transfer.__index = Transfer
Transfer.__name = "connkit.transport.ngx.transfer"

local function finish(t, res, code, msg)
  if t._done then return end
  t._done, t._res, t._code, t._msg = true, res, code, msg
  inflight = inflight - 1
  finished = finished + 1
  wake_all(t._sema)
  if poll_wake then wake_all(poll_wake) end
end

local function run(t, perform, spec)
  local res, code, msg = perform(spec)
  finish(t, res, code, msg)
end

--- Starts `perform(spec)` in an ngx light thread; returns a transfer.
-- @tparam function perform perform(spec) -> response | nil, code, message
-- @param spec the request
-- @treturn table the transfer: done(), result(), cancel()
function M.start(perform, spec)
  semaphore = semaphore or require "ngx.semaphore"
  local t = setmetatable({ _done = false, _sema = semaphore.new() }, Transfer)
  inflight = inflight + 1
  local thread, err = ngx.thread.spawn(run, t, perform, spec)
  if not thread then
    finish(t, nil, "internal", "ngx.thread.spawn failed: " .. tostring(err))
  else
    t._thread = thread
  end
  return t
end

--- True once the transfer is over (a reply, a failure or cancelled).
-- @treturn boolean
function Transfer:done()
  return self._done
end

--- The outcome: a response, or nil, code, message; waits (yielding to
-- nginx) while the transfer runs.
-- @treturn[1] connkit.http.response.Response the response
-- @return[2] nil
-- @treturn[2] string the error code
-- @treturn[2] string the message
function Transfer:result()
  while not self._done do
    self._sema:wait(60)
  end
  if self._res then return self._res end
  return nil, self._code, self._msg
end

--- Stops the transfer (its connection is closed); result() then gives
-- code "cancelled". Only the light thread that started it can stop its
-- I/O at once; from another one the transfer ends unseen in the background.
function Transfer:cancel()
  if self._done then return end
  if self._thread then ngx.thread.kill(self._thread) end
  finish(self, nil, "cancelled", "the request was cancelled")
end

--- Waits up to `timeout` seconds (yielding to nginx) for a transfer to
-- finish when none has since the last call; returns how many finished.
-- @tparam[opt] number timeout seconds at most
-- @treturn integer how many finished
function M.poll(timeout)
  if finished == 0 and inflight > 0 and timeout and timeout > 0 then
    semaphore = semaphore or require "ngx.semaphore"
    poll_wake = poll_wake or semaphore.new()
    poll_wake:wait(timeout)
  end
  local n = finished
  finished = 0
  return n
end

--- How many transfers are in flight.
-- @treturn integer
function M.pending()
  return inflight
end

--- Waits `s` seconds, yielding to nginx. (ngx.sleep(0) does not yield in
-- lua-nginx-module 0.10.23, so nothing shorter than a millisecond.)
-- @tparam number s seconds
function M.sleep(s)
  if s and s > 0 then ngx.sleep(s < 0.001 and 0.001 or s) end
end

local Job = {}
Job.__index = Job
Job.__name = "connkit.transport.ngx.job"

local unpack = table.unpack or unpack

--- Runs f(...) in a light thread; returns a job: done(), result() (f's
-- results, or raises f's error; any light thread may wait) and cancel().
-- @tparam function f the function
-- @param ... its arguments
-- @treturn table the job
-- @raise when ngx.thread.spawn fails
function M.spawn(f, ...)
  semaphore = semaphore or require "ngx.semaphore"
  local job = setmetatable({ _done = false, _sema = semaphore.new() }, Job)
  local args, n = { ... }, select("#", ...)
  local thread, err = ngx.thread.spawn(function()
    local r = { n = 0 }
    local function keep(ok, ...)
      r.n, r.ok = select("#", ...), ok
      for i = 1, r.n do r[i] = select(i, ...) end
    end
    keep(pcall(f, unpack(args, 1, n)))
    if job._done then return end -- cancelled meanwhile
    job._r, job._done = r, true
    wake_all(job._sema)
  end)
  if not thread then error("connkit: ngx.thread.spawn failed: " .. tostring(err), 2) end
  job._thread = thread
  return job
end

--- True once f has returned, raised or was cancelled.
-- @treturn boolean
function Job:done()
  return self._done
end

--- f's results once it is over (waiting, yielding to nginx, till then);
-- raises f's error. Nothing after cancel().
-- @return f's results
-- @raise f's error
function Job:result()
  while not self._done do
    self._sema:wait(60)
  end
  local r = self._r
  if not r.ok then error(r[1], 0) end
  return unpack(r, 1, r.n)
end

--- Stops the job's light thread (from the thread that spawned it; from
-- another one, f runs on unseen). Its result is then nothing.
function Job:cancel()
  if self._done then return end
  ngx.thread.kill(self._thread)
  self._r, self._done = { ok = true, n = 0 }, true
  wake_all(self._sema)
end

return M
