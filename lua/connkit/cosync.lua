--- Work that waits for transfers without blocking: a task runs a function
-- in a coroutine; where the function needs the reply of a transfer it
-- starts the transfer and calls `await(transfer)`, which hands control back
-- to whoever drives the task. A driver either steps the task now and then
-- (`task:done()`, never blocks: the non-blocking handles and connkit.poll)
-- or waits for it (`task:result()`, which drives the engine until the task
-- is over: blocking callers). Both may drive one task in turn.
--
-- Also a pcall that lets such waits pass through it: on Lua 5.1 a yield
-- cannot cross pcall (LuaJIT's and 5.2+'s can), so `M.pcall` runs the
-- function in a coroutine of its own and hands its yields outward.
--
-- Inside OpenResty a task's code may also yield to nginx (a cosocket read,
-- `ngx.sleep` in a store's lock): its driver's light thread is suspended
-- with it, and another light thread of the worker may call in while the
-- task runs. Such a caller waits for the task (`ngx.semaphore`, posted when
-- the task finishes); only a caller really inside the task (a hook or store
-- callback run by it) is re-entrant and must not wait for itself.
-- @module connkit.cosync
local M = {}

local create, resume, yield, status, running =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.status, coroutine.running
local unpack = table.unpack or unpack -- (5.1: a global)

local function pack(...) return { n = select("#", ...), ... } end

-- Coroutines whose yields reach a task's driver: a task's own coroutine and
-- the coroutines M.pcall runs inside it. (Weak: a finished one goes away.)
local awaiting = setmetatable({}, { __mode = "k" })

-- Which task a coroutine runs for: a task's own coroutine -> the task; a
-- coroutine M.pcall made -> the coroutine that made it. With the coroutine
-- that drives a running task (task._driver) they give the chain of the code
-- on the stack, from the running coroutine outward. (Weak keys.)
local owner = setmetatable({}, { __mode = "k" })
local parent = setmetatable({}, { __mode = "k" })

-- the tag of a yield that waits for something
local AWAIT = setmetatable({}, { __name = "connkit.cosync.await" })

--- True when the running code is inside a task, so `await` may be called.
-- @treturn boolean
function M.can_await()
  local co = running()
  return co ~= nil and awaiting[co] == true
end

--- Waits (inside a task) until `w` (a transfer or a task) is done.
-- @param w a transfer or task: anything with done() and result()
function M.await(w)
  yield(AWAIT, w)
end

--- pcall(f, ...) through which `await` works on every Lua version.
-- @tparam function f the function
-- @param ... its arguments
-- @return true and f's results, or false and the error
function M.pcall(f, ...)
  local co = create(f)
  local outer = running()
  if outer then
    if awaiting[outer] then awaiting[co] = true end
    parent[co] = outer
  end
  local r = pack(resume(co, ...))
  while true do
    if not r[1] then parent[co] = nil; return false, r[2] end
    if status(co) == "dead" then parent[co] = nil; return unpack(r, 1, r.n) end
    -- a yield inside f: pass it to our own resumer, and its answer back
    r = pack(resume(co, yield(unpack(r, 2, r.n))))
  end
end

local Task = {}
Task.__index = Task
Task.__name = "connkit.task"

--- A task running `f()`; it starts on the first `done()` or `result()`.
-- @tparam function f the task's body; it may call M.await
-- @treturn table the task: done(), result(), wait(), running(), ...
function M.task(f)
  local co = create(f)
  awaiting[co] = true
  local t = setmetatable({ _co = co }, Task)
  owner[co] = t
  return t
end

--- A task that is already over with these results.
-- @param ... the results
-- @treturn table the task
function M.finished(...)
  return setmetatable({ _final = true, _ok = true, _values = pack(...) }, Task)
end

-- Ends the task: ok = true and the function's results, or ok = false and
-- the error it raised.
local function finish(t, ok, values)
  t._final, t._ok, t._values, t._co, t._waiting = true, ok, values, nil, nil
  local sema = t._sema
  if sema and sema:count() < 0 then sema:post(-sema:count()) end -- wake every waiter
  if t.on_done then t.on_done(t) end
end

--- Runs the task as far as it can go without blocking; true once it is over.
-- Called again while it runs (from a hook inside it), it just says false.
-- @treturn boolean whether the task is over
function Task:done()
  while not self._final do
    if self._running then return false end
    local w = self._waiting
    if w then
      if not w:done() then return false end
      self._waiting = nil
    end
    self._running, self._driver, self._resumed_at = true, running(), os.time()
    local r = pack(resume(self._co))
    self._running, self._driver = false, nil
    if not r[1] then
      finish(self, false, r[2])
    elseif status(self._co) == "dead" then
      finish(self, true, pack(unpack(r, 2, r.n)))
    elseif r[2] == AWAIT then
      self._waiting = r[3]
    else
      finish(self, false, "connkit: a yield inside a token fetch (hooks and stores must not yield)")
    end
  end
  return true
end

--- True while the task's own code runs: on the stack (a hook inside it),
-- or, in OpenResty, suspended inside nginx for another light thread.
-- @treturn boolean
function Task:running()
  return self._running == true
end

-- True when the running code is inside `task`: the chain from the running
-- coroutine outward (M.pcall's coroutines, tasks and their drivers) reaches it.
local function inside(task)
  local co = running()
  while co do
    local t = owner[co]
    if t == task then return true end
    if t then co = t._driver else co = parent[co] end
  end
  return false
end

-- OpenResty's phases where a light thread may yield (wait on a semaphore,
-- ngx.sleep); elsewhere (init, set_by_lua, filters, log) it cannot.
local YIELDABLE = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}

local semaphore -- ngx.semaphore once looked up (false: not in OpenResty)

--- True inside OpenResty in a phase where the running code may yield to
-- nginx (so it can wait with ngx.sleep or a semaphore); false elsewhere,
-- and always false outside OpenResty.
-- @treturn boolean
function M.ngx_can_yield()
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.get_phase) ~= "function" then return false end
  if semaphore == nil then
    local ok, m = pcall(require, "ngx.semaphore")
    semaphore = ok and m or false
  end
  return semaphore ~= false and YIELDABLE[ngx.get_phase()] == true
end

--- True while the task runs in another OpenResty light thread (suspended
-- inside nginx) and the running code may wait for it (M.ngx_can_yield).
-- False outside OpenResty, where a running task is always on the caller's
-- own stack, and for a caller inside the task, which would wait for itself.
-- @treturn boolean
function Task:elsewhere()
  return self._running == true and M.ngx_can_yield() and not inside(self)
end

--- True while the task has run elsewhere (Task:elsewhere) for more than
-- `seconds`: its light thread was probably killed inside nginx (client
-- abort with lua_check_client_abort, ngx.exit in a sibling thread), and
-- then it never finishes.
-- @tparam number seconds how long counts as stalled
-- @treturn boolean
function Task:stalled(seconds)
  return self:elsewhere() and os.time() - self._resumed_at > seconds
end

--- Sleeps this light thread (OpenResty) until the task, running elsewhere
-- (Task:elsewhere), finishes or `timeout` seconds pass.
-- @tparam number timeout seconds at most
function Task:wait_elsewhere(timeout)
  local sema = self._sema
  if not sema then
    sema = semaphore.new(0)
    self._sema = sema
  end
  sema:wait(timeout)
end

-- The task at the end of `t`'s chain of awaited tasks (itself if it awaits
-- no task).
local function innermost(t)
  while getmetatable(t._waiting) == Task do t = t._waiting end
  return t
end

--- In OpenResty, while the task (or a task it awaits) runs in another light
-- thread: waits for that one on its semaphore, at most `timeout` seconds,
-- and returns true. Otherwise returns false at once (drive the task).
-- @tparam number timeout seconds at most
-- @treturn boolean whether it waited
function Task:wait_other(timeout)
  local t = innermost(self)
  if t._final or not t:elsewhere() then return false end
  t:wait_elsewhere(timeout)
  return true
end

-- (the semaphore's wait is bounded; long waits come in slices of this)
local SLICE = 60

--- Drives the engine until the task is over (it may have started already).
-- A task running in another OpenResty light thread is waited for.
function Task:wait()
  while not self:done() do
    if not self:wait_other(SLICE) then
      if self._running then error("connkit: a task waits for itself", 2) end
      local w = self._waiting
      if getmetatable(w) == Task then w:wait() else w:result() end
    end
  end
end

--- Waits for the task, then returns its results or raises its error.
-- @return the task's results
-- @raise the task's error
function Task:result()
  self:wait()
  if not self._ok then error(self._values, 0) end
  local v = self._values
  return unpack(v, 1, v.n)
end

M.Task = Task
return M
