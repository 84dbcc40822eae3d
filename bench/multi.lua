--- The connkit side of the concurrent HTTP benchmark (see bench/README.md).
--
-- Usage: lua bench/multi.lua PORT COUNT CONCURRENCY [ROUNDS]
-- Prepares COUNT GETs of /data.json through the same api_token account as
-- bench/http.lua and runs them with connkit.all(requests, {concurrency = n}),
-- after an untimed warm-up round of CONCURRENCY requests that opens the
-- connections, as bench/multi_baseline.c does. Then two rounds of COUNT: the
-- first in a fresh process (its time includes growing the Lua heap for the
-- 20,000 responses it returns: page faults), the second in steady state,
-- the previous round's responses now garbage, as in a long-running program.
-- The timed part of a round is the connkit.all call and the check of every
-- response; preparing the requests comes before it, as the baseline sets up
-- its handles (URL, headers) before its clock starts, and is printed as
-- prepare. Prints `requests=N failures=F seconds=S cpu=S prepare=S
-- first_seconds=S` (seconds, cpu, prepare: the second round), or
-- `skipped: ...` when this build of connkit has no connkit.all yet.
-- ROUNDS = 1 (the instruction counts of bench/http.sh) runs the warm-up and
-- one round of COUNT only, and prints its figures as both rounds';
-- ROUNDS = prepare runs the warm-up and prepares COUNT requests, then ends
-- (the same program without connkit.all: its count is subtracted);
-- 1+prepare runs one round, then prepares COUNT more requests and ends (the
-- steady-state count: 2 rounds minus this is the second round's connkit.all).
-- The lines of modes 2 and 1 also carry faults= and first_faults= (minor
-- page faults of each timed round, /proc/self/stat) and maxrss= (peak
-- resident kB, VmHWM). ROUNDS = mem measures the heap instead (untimed, with
-- full collections the timed modes must not make): prints
-- prepared_bytes= and result_bytes=, the Lua heap grown per prepared
-- request and per result of connkit.all (the results list included).
local connkit = require "connkit"
local socket = require "socket"   -- lua-socket: a wall clock with sub-ms resolution

local port, count, concurrency = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3])
local mode = arg[4] or "2"
local rounds = ({ ["1"] = 1, ["2"] = 2, prepare = 0, ["1+prepare"] = 1, mem = 0 })[mode]
assert(port and count and concurrency and rounds,
  "usage: multi.lua PORT COUNT CONCURRENCY [1|2|prepare|1+prepare|mem]")

-- Minor page faults of this process so far (field 10 of /proc/self/stat,
-- counted after the ")" that ends the command name); nil off Linux.
local function minflt()
  local f = io.open("/proc/self/stat")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  local rest = s:match("%)%s+(.*)")
  local i = 2 -- rest starts at field 3
  for v in rest:gmatch("%S+") do
    i = i + 1
    if i == 10 then return tonumber(v) end
  end
end
-- Peak resident set of this process in kB (VmHWM); nil off Linux.
local function maxrss()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)"))
end

if connkit.all == nil then
  print("skipped: connkit.all not yet available")
  os.exit(0)
end

local acct = dofile((os.getenv("CONNKIT_ROOT") or ".") .. "/bench/bench_account.lua")(port)

-- Prepares n requests and runs them; returns failures, the first one, the
-- wall time spent preparing, and the wall and CPU time of connkit.all.
local function round(n)
  local reqs = {}
  local p0 = socket.gettime()
  for i = 1, n do reqs[i] = acct:prepare { method = "GET", url = "/data.json" } end
  local prep = socket.gettime() - p0
  local f0 = minflt()
  local t0, c0 = socket.gettime(), os.clock()
  local results = connkit.all(reqs, { concurrency = concurrency })
  local failures, first = 0, nil
  for i = 1, n do
    local r = results[i]
    local res = r and r.res
    if not (res and res.status == 200 and #res.body > 0) then
      failures = failures + 1
      first = first or (res and ("status " .. tostring(res.status)) or tostring(r and r.err))
    end
  end
  local secs, cpu = socket.gettime() - t0, os.clock() - c0
  return failures, first, prep, secs, cpu, f0 and (minflt() - f0) or -1
end

local warm_fail, warm_first = round(concurrency)
if warm_fail > 0 then
  io.stderr:write("multi.lua: warm-up failed: ", tostring(warm_first), "\n")
  os.exit(1)
end

if mode == "mem" then
  local function kb() collectgarbage(); collectgarbage(); return collectgarbage("count") end
  local reqs = {}
  local k0 = kb()
  for i = 1, count do reqs[i] = acct:prepare { method = "GET", url = "/data.json" } end
  local k1 = kb()
  local results = connkit.all(reqs, { concurrency = concurrency })
  local k2 = kb()
  for i = 1, count do assert(results[i].res and results[i].res.status == 200, "a request failed") end
  io.write(("requests=%d failures=0 prepared_bytes=%.0f result_bytes=%.0f\n")
    :format(count, (k1 - k0) * 1024 / count, (k2 - k1) * 1024 / count))
  os.exit(0)
end

if rounds == 0 then
  local reqs = {}
  for i = 1, count do reqs[i] = acct:prepare { method = "GET", url = "/data.json" } end
  io.write(("requests=%d failures=0 prepared=%d\n"):format(count, #reqs))
  os.exit(0)
end

local failures, first, prep, first_secs, cpu, first_faults = round(count)
local faults = first_faults
if mode == "1+prepare" then
  local reqs = {}
  for i = 1, count do reqs[i] = acct:prepare { method = "GET", url = "/data.json" } end
  io.write(("requests=%d failures=%d prepared=%d\n"):format(count, failures, #reqs))
  os.exit(failures == 0 and 0 or 1)
end
local secs = first_secs
if rounds == 2 then
  local failures2, first2
  failures2, first2, prep, secs, cpu, faults = round(count)
  failures, first = failures + failures2, first or first2
end

if first then io.stderr:write("multi.lua: first failure: ", first, "\n") end
io.write(("requests=%d failures=%d seconds=%.6f cpu=%.6f prepare=%.6f first_seconds=%.6f"
  .. " faults=%d first_faults=%d maxrss=%d\n")
  :format(count, failures, secs, cpu, prep, first_secs, faults, first_faults, maxrss() or -1))
os.exit(failures == 0 and 0 or 1)
