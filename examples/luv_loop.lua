--- connkit inside a luv (libuv) event loop: requests start with req:start(),
-- a uv poll handle on connkit.pollfd() and a uv timer set from
-- connkit.timeout() call connkit.poll(0) exactly when there is work, so the
-- loop sleeps in between (no busy polling) and stays free for other work.
-- The same recipe fits Neovim's vim.loop (it is luv).
-- Run: lua examples/luv_loop.lua BASE_URL   (an httpbin, e.g. spec/peers)
local uv = require "luv"
local connkit = require "connkit"

local echo = connkit.integration {
  name = "Echo", key = "echo", auth = "api_token", base_url = "{base}",
  parameters = { base = { required = true } },
}:account { parameters = { base = arg[1] or "http://127.0.0.1:8080" },
  credentials = { token = os.getenv("ECHO_TOKEN") or "demo" } }

-- Drives connkit from a luv loop; calls on_done(i, res, err) for each handle
-- as it finishes, and closes its uv handles once all are done.
local function drive(handles, on_done)
  local poll = uv.new_poll(connkit.pollfd())
  local timer = uv.new_timer()
  local left, stats = #handles, { wakeups = 0 }
  local function step()
    stats.wakeups = stats.wakeups + 1
    connkit.poll(0)                       -- never blocks
    for i, h in pairs(handles) do
      if h:done() then
        handles[i] = nil
        left = left - 1
        on_done(i, h:result())
      end
    end
    timer:stop()
    if left == 0 then
      poll:close()
      timer:close()
      return
    end
    local t = connkit.timeout()           -- nil: only sockets to wait for
    if t then timer:start(math.ceil(t * 1000), 0, step) end
  end
  poll:start("r", step)
  step()
  return stats
end

local started = uv.hrtime()
local handles = { echo:prepare { url = "/delay/1" }:start() }   -- a slow one
for i = 1, 5 do
  handles[#handles + 1] = echo:prepare { method = "POST", url = "/anything/{n}",
    vars = { n = i }, json = { n = i } }:start()
end

-- loop iterations, counted to show the loop sleeps while it waits
local iterations = 0
local check = uv.new_check()
check:start(function() iterations = iterations + 1 end)

local total, replies = #handles, 0
local stats = drive(handles, function(i, res, err)
  replies = replies + 1
  if not res then
    print(("reply %d: error %s"):format(i, err.code))
  else
    local body = res:json() or {}
    print(("reply %d: %d %s"):format(i, res.status,
      body.json and ("json.n=%d"):format(body.json.n) or (body.url or "")))
  end
  if replies == total then check:close() end
end)
uv.run()
print(("done in %.2f s: %d wakeups, %d loop iterations"):format(
  (uv.hrtime() - started) / 1e9, stats.wakeups, iterations))
