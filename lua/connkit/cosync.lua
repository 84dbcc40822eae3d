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
-- @module connkit.cosync
local M = {}

local create, resume, yield, status, running =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.status, coroutine.running
local unpack = table.unpack or unpack -- (5.1: a global)

local function pack(...) return { n = select("#", ...), ... } end

-- Coroutines whose yields reach a task's driver: a task's own coroutine and
-- the coroutines M.pcall runs inside it. (Weak: a finished one goes away.)
local awaiting = setmetatable({}, { __mode = "k" })

-- the tag of a yield that waits for something
local AWAIT = setmetatable({}, { __name = "connkit.cosync.await" })

--- True when the running code is inside a task, so `await` may be called.
function M.can_await()
  local co = running()
  return co ~= nil and awaiting[co] == true
end

--- Waits (inside a task) until `w` (a transfer or a task) is done.
function M.await(w)
  yield(AWAIT, w)
end

--- pcall(f, ...) through which `await` works on every Lua version.
function M.pcall(f, ...)
  local co = create(f)
  local outer = running()
  if outer and awaiting[outer] then awaiting[co] = true end
  local r = pack(resume(co, ...))
  while true do
    if not r[1] then return false, r[2] end
    if status(co) == "dead" then return unpack(r, 1, r.n) end
    -- a yield inside f: pass it to our own resumer, and its answer back
    r = pack(resume(co, yield(unpack(r, 2, r.n))))
  end
end

local Task = {}
Task.__index = Task
Task.__name = "connkit.task"

--- A task running `f()`; it starts on the first `done()` or `result()`.
function M.task(f)
  local co = create(f)
  awaiting[co] = true
  return setmetatable({ _co = co }, Task)
end

--- A task that is already over with these results.
function M.finished(...)
  return setmetatable({ _final = true, _ok = true, _values = pack(...) }, Task)
end

-- Ends the task: ok = true and the function's results, or ok = false and
-- the error it raised.
local function finish(t, ok, values)
  t._final, t._ok, t._values, t._co, t._waiting = true, ok, values, nil, nil
  if t.on_done then t.on_done(t) end
end

--- Runs the task as far as it can go without blocking; true once it is over.
-- Called again while it runs (from a hook inside it), it just says false.
function Task:done()
  while not self._final do
    if self._running then return false end
    local w = self._waiting
    if w then
      if not w:done() then return false end
      self._waiting = nil
    end
    self._running = true
    local r = pack(resume(self._co))
    self._running = false
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

--- True while the task's own code is on the stack (a hook inside it).
function Task:running()
  return self._running == true
end

--- Drives the engine until the task is over (it may have started already).
function Task:wait()
  while not self:done() do
    if self._running then error("connkit: a task waits for itself", 2) end
    local w = self._waiting
    if getmetatable(w) == Task then w:wait() else w:result() end
  end
end

--- Waits for the task, then returns its results or raises its error.
function Task:result()
  self:wait()
  if not self._ok then error(self._values, 0) end
  local v = self._values
  return unpack(v, 1, v.n)
end

M.Task = Task
return M
