--- Non-blocking requests inside OpenResty: where the transport runs light
-- threads (the ngx transport's `spawn`), `req:start()` is one light thread
-- that sends the request (the same steps as send(), every transfer over
-- cosockets) and `connkit.all` runs up to `concurrency` of them. They move
-- on by themselves; done(), result() and cancel() ask the thread's job.
-- (Elsewhere: connkit.http.async's handles on the curl engine.)
-- @module connkit.http.threads
local errors = require "connkit.errors"
local attempt = require "connkit.http.attempt"

local M = {}

local Handle = {}
Handle.__index = Handle
Handle.__name = "connkit.handle"

--- True once the request has finished (or was cancelled); never blocks.
-- @treturn boolean
function Handle:done()
  return self._cancelled or self._job:done()
end

--- The response, or nil and an error; waits (yielding to nginx) till then.
-- @treturn[1] connkit.http.response.Response the response
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function Handle:result()
  if self._cancelled then return nil, errors.new("cancelled", "the request was cancelled") end
  return self._job:result()
end

--- Stops the request; its result is then nil and an error with code
-- "cancelled".
function Handle:cancel()
  if self._cancelled or self._job:done() then return end
  self._cancelled = true
  self._job:cancel()
end

--- The handle of prepared request `req` sent in a light thread of
-- transport `t`.
-- @tparam connkit.http.request.Request req the request
-- @tparam table t the transport module
-- @treturn table the handle: done(), result(), cancel()
function M.start(req, t)
  return setmetatable({ request = req, _job = t.spawn(attempt.send, req) }, Handle)
end

--- connkit.all over transport `t`: up to n light threads, each sending the
-- next request left, until none is left; the results in input order. A
-- Lua error in one is raised once every thread is over.
-- @tparam table reqs the prepared requests
-- @tparam integer n the concurrency
-- @tparam table t the transport module
-- @treturn table the results { { res =, err = }, ... }
function M.all(reqs, n, t)
  local results, total, nexti = {}, #reqs, 1
  local function worker()
    while nexti <= total do
      local i = nexti
      nexti = i + 1
      local res, err = attempt.send(reqs[i])
      results[i] = { res = res, err = err }
    end
  end
  local jobs = {}
  for k = 1, math.min(n, total) do jobs[k] = t.spawn(worker) end
  local ok, err = true, nil
  for k = 1, #jobs do
    local jok, jerr = pcall(jobs[k].result, jobs[k])
    if not jok and ok then ok, err = false, jerr end
  end
  if not ok then error(err, 0) end
  return results
end

return M
