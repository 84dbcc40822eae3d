--- The pollable engine in a luv loop against connkit.all (see bench/luv.sh).
--
-- Usage: lua bench/luv.lua PORT COUNT CONCURRENCY MODE
-- MODE "all": connkit.all(requests, { concurrency = CONCURRENCY });
-- MODE "luv": the same requests started with req:start(), at most
-- CONCURRENCY in flight, driven from a luv loop: a uv poll handle on
-- connkit.pollfd() and a uv timer from connkit.timeout() call
-- connkit.poll(0); a finished handle's slot starts the next request.
-- MODE "poll": the same handles driven by a plain loop of connkit.poll(1)
-- (no pollfd, no luv): what the handles cost by themselves.
-- Each mode runs in a process of its own (pollfd() turns the engine event
-- driven for good). An untimed warm-up of CONCURRENCY requests opens the
-- connections; the timed round is preparing nothing (the requests are
-- prepared before the clock starts, as in bench/multi.lua), running COUNT
-- GETs of /data.json and checking every reply. Prints
-- `requests=N failures=F seconds=S cpu=S wakeups=W`, or `skipped: ...`
-- when luv is not installed for this Lua.
local connkit = require "connkit"
local socket = require "socket"
local ok_uv, uv = pcall(require, "luv")

local port, count, concurrency, mode = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3]), arg[4]
assert(port and count and concurrency and (mode == "all" or mode == "luv" or mode == "poll"),
  "usage: luv.lua PORT COUNT CONCURRENCY all|luv|poll")
if not ok_uv then
  print("skipped: lua-luv is not installed for this Lua")
  os.exit(0)
end

local acct = dofile((os.getenv("CONNKIT_ROOT") or ".") .. "/bench/bench_account.lua")(port)

local function ok_reply(res) return res and res.status == 200 and #res.body > 0 end

-- Runs reqs from a luv loop, up to n in flight; returns failures, wakeups.
local function run_luv(reqs, n)
  local poll = uv.new_poll(connkit.pollfd())
  local timer = uv.new_timer()
  local active, nexti, failures, wakeups = {}, 1, 0, 0
  local armed_ms = nil -- the delay the timer was last started with (nil: stopped)
  local function fill()
    while #active < n and nexti <= #reqs do
      active[#active + 1] = reqs[nexti]:start()
      nexti = nexti + 1
    end
  end
  local function step()
    wakeups = wakeups + 1
    local t
    -- a request just started is due at once (timeout() 0): it goes out now
    -- rather than on the next turn of the loop
    for _ = 1, 4 do
      connkit.poll(0)
      local j = 1
      while j <= #active do
        local h = active[j]
        if h:done() then
          if not ok_reply(h:result()) then failures = failures + 1 end
          active[j] = active[#active]
          active[#active] = nil
        else
          j = j + 1
        end
      end
      fill()
      t = connkit.timeout()
      if t ~= 0 then break end
    end
    if #active == 0 then
      poll:close()
      timer:close()
      return
    end
    -- the timer is set again only when the time it should fire changes
    local ms = t and math.ceil(t * 1000)
    if ms ~= armed_ms or (ms and not timer:is_active()) then
      timer:stop()
      if ms then timer:start(ms, 0, step) end
      armed_ms = ms
    end
  end
  fill()
  poll:start("r", step)
  step()
  uv.run()
  return failures, wakeups
end

-- The same without luv or pollfd: connkit.poll(1) waits for the engine.
local function run_poll(reqs, n)
  local active, nexti, failures, wakeups = {}, 1, 0, 0
  repeat
    while #active < n and nexti <= #reqs do
      active[#active + 1] = reqs[nexti]:start()
      nexti = nexti + 1
    end
    wakeups = wakeups + 1
    connkit.poll(1)
    local j = 1
    while j <= #active do
      local h = active[j]
      if h:done() then
        if not ok_reply(h:result()) then failures = failures + 1 end
        active[j] = active[#active]
        active[#active] = nil
      else
        j = j + 1
      end
    end
  until #active == 0 and nexti > #reqs
  return failures, wakeups
end

local function run_all(reqs, n)
  local failures = 0
  for _, r in ipairs(connkit.all(reqs, { concurrency = n })) do
    if not ok_reply(r.res) then failures = failures + 1 end
  end
  return failures, 0
end

local run = ({ all = run_all, luv = run_luv, poll = run_poll })[mode]

local function round(n)
  local reqs = {}
  for i = 1, n do reqs[i] = acct:prepare { method = "GET", url = "/data.json" } end
  local t0, c0 = socket.gettime(), os.clock()
  local failures, wakeups = run(reqs, concurrency)
  return failures, wakeups, socket.gettime() - t0, os.clock() - c0
end

local warm = round(concurrency)
if warm > 0 then
  io.stderr:write("luv.lua: the warm-up failed\n")
  os.exit(1)
end
local failures, wakeups, secs, cpu = round(count)
io.write(("requests=%d failures=%d seconds=%.6f cpu=%.6f wakeups=%d\n")
  :format(count, failures, secs, cpu, wakeups))
os.exit(failures == 0 and 0 or 1)
