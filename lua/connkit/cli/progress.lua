--- A progress bar for the connkit command's transfers, on stderr and only
-- when stderr is a terminal: bytes done of the total, a bar, the rate and
-- the time left. Redrawn at most 10 times a second, ended with a newline.
-- @module connkit.cli.progress
local core = require "connkit.core"
local output = require "connkit.cli.output"

local M = {}

local function size(n)
  local units = { "B", "KiB", "MiB", "GiB", "TiB" }
  local i = 1
  while n >= 1024 and i < #units do n = n / 1024; i = i + 1 end
  return i == 1 and ("%d %s"):format(n, units[i]) or ("%.1f %s"):format(n, units[i])
end
M.size = size

-- h:mm:ss or m:ss (no // operator: LuaJIT and 5.1 read this file too)
local function clock(s)
  if not s or s ~= s or s == math.huge or s < 0 then return "--:--" end
  s = math.floor(s + 0.5)
  local h, m = math.floor(s / 3600), math.floor(s % 3600 / 60)
  if h > 0 then return ("%d:%02d:%02d"):format(h, m, s % 60) end
  return ("%d:%02d"):format(m, s % 60)
end

--- A progress(done, total) callback for `name`, or nil when stderr is not
-- a terminal. `start` is what was already there (a resumed transfer): the
-- rate counts only what moves now. finish() ends the line.
-- @tparam string name the file's name, shown
-- @tparam[opt=0] integer start bytes already there
-- @treturn table|nil the callable progress object (with finish()), or nil
function M.new(name, start)
  if not output.is_terminal(2) then return nil, function() end end
  local t0, last, shown = core.now(), 0, false
  start = start or 0
  local function draw(done, total, final)
    local now = core.now()
    if not final and now - last < 0.1 then return end
    last = now
    local moved, took = done - start, now - t0
    local rate = took > 0 and moved / took or 0
    local pct = total and total > 0 and done / total or nil
    local width = 20
    local fill = pct and math.floor(pct * width + 0.5) or 0
    local eta = (total and rate > 0) and (total - done) / rate or nil
    io.stderr:write(("\r%s [%s%s] %s%s %s %s/s ETA %s\27[K"):format(name,
      ("#"):rep(fill), ("."):rep(width - fill),
      pct and ("%3d%% "):format(math.floor(pct * 100)) or "", size(done),
      total and ("of " .. size(total)) or "", size(rate), final and clock(0) or clock(eta)))
    io.stderr:flush()
    shown = true
  end
  local last_total
  local function progress(done, total)
    last_total = total
    draw(done, total, false)
    return true
  end
  -- done: the bytes at the end, or nil when the transfer failed (the bar
  -- stays where it stopped)
  local function finish(done)
    if done then draw(done, last_total or done, true) end
    if shown then io.stderr:write("\n") end
  end
  return progress, finish
end

return M
