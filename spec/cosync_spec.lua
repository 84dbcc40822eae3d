-- connkit.cosync: tasks that wait without blocking, and a pcall that waits
-- pass through on every Lua version (5.1's own pcall cannot be yielded
-- across). No peer: a fake "transfer" (done() / result()) stands in for one.
local cosync = require "connkit.cosync"

-- Something to wait for that is done after `steps` calls of done().
local function waitable(steps)
  local w = { left = steps, results = 0 }
  function w:done()
    if self.left > 0 then self.left = self.left - 1 end
    return self.left == 0
  end
  function w:result()
    self.results = self.results + 1
    self.left = 0
  end
  return w
end

describe("cosync", function()
  it("a task waits for what it awaits, through cosync.pcall, then returns its values", function()
    local w = waitable(3)
    local inside
    local t = cosync.task(function()
      local ok, a, b, c = cosync.pcall(function(x)
        inside = cosync.can_await()
        cosync.await(w)
        return x, nil, "c"
      end, "a")
      assert(ok)
      return a, b, c
    end)
    assert.is_false(cosync.can_await())
    assert.is_false(t:done()) -- starts, waits
    assert.is_true(inside)
    assert.is_false(t:done())
    assert.is_true(t:done()) -- w is done on its third done()
    local a, b, c = t:result()
    assert.equal("a", a)
    assert.is_nil(b)
    assert.equal("c", c)
  end)

  it("cosync.pcall catches an error raised after a wait", function()
    local t = cosync.task(function()
      return cosync.pcall(function()
        cosync.await(waitable(1))
        error({ code = "boom" })
      end)
    end)
    local ok, err = t:result()
    assert.is_false(ok)
    assert.equal("boom", err.code)
  end)

  it("result() drives what the task waits for, and re-raises the task's error", function()
    local w = waitable(1000)
    local t = cosync.task(function()
      cosync.await(w)
      error("broken hook", 0)
    end)
    assert.has_error(function() t:result() end, "broken hook")
    assert.equal(1, w.results)
    assert.has_error(function() t:result() end, "broken hook")
  end)

  it("a task may wait for another task", function()
    local inner = cosync.task(function() cosync.await(waitable(2)); return 42 end)
    local outer = cosync.task(function() cosync.await(inner); return inner:result() + 1 end)
    assert.equal(43, outer:result())
  end)

  it("a task driven from inside itself does not run twice", function()
    local t
    local seen
    t = cosync.task(function()
      seen = t:done()
      assert.is_true(t:running())
      return "ok"
    end)
    assert.equal("ok", t:result())
    assert.is_false(seen)
    assert.is_false(t:running())
  end)

  it("a yield that is not a wait ends the task with an error", function()
    local t = cosync.task(function() coroutine.yield("surprise") end)
    assert.has_error(function() t:result() end, "connkit: a yield inside a token fetch (hooks and stores must not yield)")
  end)

  it("finished() is a task that is already over", function()
    local t = cosync.finished(nil, "why")
    assert.is_true(t:done())
    local a, b = t:result()
    assert.is_nil(a)
    assert.equal("why", b)
  end)
end)
