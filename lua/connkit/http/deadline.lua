--- The deadline of a request: one per send() or start(), over every step of
-- it (the wait for a token, the wait for the store's lock, transfers,
-- redirect hops, retries and their waits). Only requests that may take more
-- than one step compute it: a plain request is one transfer, bounded by its
-- own timeout. Deadlines are core.now() seconds.
-- @module connkit.http.deadline
local core = require "connkit.core"
local retry = require "connkit.http.retry"
local transport = require "connkit.transport"
local files = require "connkit.http.files"

local now, format_number = core.now, core.format_number

local M = {}

-- the request's error for a failure (connkit.http.request.fail: names the
-- request, not its secrets); looked up when needed (request requires us)
local function fail(...)
  return require("connkit.http.request").fail(...)
end

--- The deadline of request `req` sent now.
-- @tparam connkit.http.request.Request req the request
-- @treturn number the deadline (connkit.core.now() seconds)
function M.of(req)
  return now() + rawget(req, "timeout")
end

--- nil and the "timeout" error of a request whose deadline passed `before`
-- something ("the token came", ...).
-- @tparam connkit.http.request.Request req the request
-- @tparam string before what did not happen in time
-- @return nil
-- @treturn connkit.errors.Error code "timeout"
function M.out_of_time(req, before)
  return fail(req, "timeout", ("the request's timeout (%s s) ran out before %s")
    :format(format_number(rawget(req, "timeout")), before))
end
local out_of_time = M.out_of_time

--- What transport `t` sends now: the request's own spec while (nearly)
-- all its time is left, else a copy whose timeout is what is left (the curl
-- transport rounds it up to a whole millisecond: never 0, which curl reads
-- as "none"). Returns the spec, or nil and a "timeout" error once the
-- deadline has passed.
-- @tparam table t the transport module
-- @tparam connkit.http.request.Request req the request
-- @tparam number deadline the end of the request (connkit.core.now() seconds)
-- @return[1] the spec for the transport
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.spec_until(t, req, deadline)
  local left = deadline - now()
  if left <= 0 then return out_of_time(req, "it was sent") end
  if rawget(req, "_dpop") then return require("connkit.auth.dpop").spec(t, req, left) end -- (a fresh proof)
  if left >= rawget(req, "timeout") - 0.001 then return t.of_request(req) end
  local w, code, msg = t.of_table(files.carry(req, {
    method = req.method, url = req.url, body = req.body, header_lines = rawget(req, "header_lines"),
    timeout = left, connect_timeout = req.connect_timeout, ca_file = req.ca_file, client_tls = req.client_tls,
    max_body = req.max_body, decompress = req.decompress, shown_url = rawget(req, "shown_url"),
  }, true))
  if not w then return fail(req, code, msg) end
  return w
end

--- Waits for a task (connkit.cosync), driving the transport's transfers,
-- until it is over or the deadline passes: true when it is over. A task
-- given up on goes on for whoever else waits for it (connkit.poll and later
-- callers drive it). In OpenResty, a task running in another light thread
-- is waited for on its semaphore (this light thread sleeps; the worker goes
-- on).
-- @tparam table task the task
-- @tparam number deadline the end of the request (connkit.core.now() seconds)
-- @treturn boolean whether the task is over
function M.wait_task(task, deadline)
  local t
  while not task:done() do
    local left = deadline - now()
    if left <= 0 then return false end
    if not task:wait_other(left) then
      if left > 0.1 then left = 0.1 end -- slices: an interrupt hook runs between them
      t = t or transport.current()
      if t.pending() > 0 then t.poll(left) else t.sleep(left / 10) end
    end
  end
  return true
end

--- Seconds to wait before the next attempt per the request's retry rules,
-- or nil: no retry, or one that would start after the deadline (a failure's
-- message then says so; a reply is given back as it is).
-- @tparam connkit.http.request.Request req the request
-- @param res the last reply, or nil
-- @param err the last failure, when there is no reply
-- @tparam integer attempt the number of the last attempt
-- @tparam number deadline the end of the request (connkit.core.now() seconds)
-- @treturn number|nil the seconds to wait, or nil
function M.retry_wait(req, res, err, attempt, deadline)
  local rules = rawget(req, "_retry")
  local wait = rules and retry.delay(rules, req.method, res, err, attempt)
  if not wait then return nil end
  if now() + wait >= deadline then
    if err then
      err.message = err.message .. ("; not retried: the next attempt would start after the request's timeout (%s s)")
        :format(format_number(rawget(req, "timeout")))
    end
    return nil
  end
  return wait
end

return M
