--- connkit inside Neovim (0.7+, LuaJIT): vim.loop is luv, so the recipe of
-- examples/luv_loop.lua works as it is: a poll handle on connkit.pollfd()
-- and a timer from connkit.timeout() call connkit.poll(0) when there is
-- work, and the editor stays responsive meanwhile. Needs connkit built for
-- LuaJIT (make LUA=luajit) on LUA_PATH / LUA_CPATH.
-- Run: BASE_URL=http://127.0.0.1:8080 nvim --headless -u NONE -c 'luafile examples/nvim_loop.lua'
local uv = vim.loop
local connkit = require "connkit"

local echo = connkit.integration {
  name = "Echo", key = "echo", auth = "none", base_url = "{base}",
  parameters = { base = { required = true } },
}:account { parameters = { base = os.getenv("BASE_URL") or "http://127.0.0.1:8080" } }

local handles = {}
for i = 1, 3 do
  handles[i] = echo:prepare { method = "POST", url = "/anything/{n}", vars = { n = i },
    json = { editor = "nvim", n = i } }:start()
end

local poll = uv.new_poll(connkit.pollfd())
local timer = uv.new_timer()
local left, wakeups = #handles, 0
local function step()
  wakeups = wakeups + 1
  connkit.poll(0)
  for i, h in pairs(handles) do
    if h:done() then
      handles[i] = nil
      left = left - 1
      local res, err = h:result()
      local body = res and res:json()
      io.stdout:write(res and ("reply %d: %d %s n=%d\n"):format(i, res.status, body.json.editor, body.json.n)
        or ("reply %d: error %s\n"):format(i, err.code))
    end
  end
  timer:stop()
  if left == 0 then
    poll:close()
    timer:close()
    io.stdout:write(("done: %d wakeups\n"):format(wakeups))
    vim.schedule(function() vim.cmd("qa!") end)
    return
  end
  local t = connkit.timeout()
  if t then timer:start(math.ceil(t * 1000), 0, step) end
end
poll:start("r", step)
step()
