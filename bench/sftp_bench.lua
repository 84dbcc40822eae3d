--- SFTP benchmark: connkit against OpenSSH `sftp -b` (default settings) and
-- `curl sftp://`, on loopback against the spec's sshd peer, get and put of
-- one file, interleaved runs (the order rotates each run). Every tool logs in
-- with the same ed25519 key and checks the host key; every timing covers
-- connect, login and the transfer.
--
-- Prints, from the same runs: MiB/s (median, min..max); the wall ratio
-- connkit/other of each run (median, min..max); and the client's CPU time
-- (user + sys) per GiB moved: for OpenSSH and curl the process and the
-- children it waited for (sftp forks ssh), read as the change of this
-- process's cutime + cstime (/proc/self/stat) across the tool's run; for
-- connkit, which runs in this process, the change of its own utime + stime
-- (the bench's own work in that window is a few Lua calls). Clock ticks are
-- 10 ms: at 256 MiB that is about 1 % of a run. Then, unless
-- SFTP_BENCH_PROFILE=off, a `perf record` of a 64 MiB connkit get in a child
-- process gives the share of the client's CPU by library (libcrypto, the
-- kernel, libc's memmove/memcpy, libssh2, connkit's core.so, Lua).
-- Env: SFTP_BENCH_MIB (default 256), SFTP_BENCH_RUNS (default 7),
-- SFTP_BENCH_PARALLEL (connkit's `parallel` option, default: its default).
local helpers = require "helpers"
local socket = require "socket"
local connkit = require "connkit"
local q = helpers.shell_quote

-- A child process doing one connkit transfer (the profiled run):
-- sftp_bench.lua one get|put PORT KEY FINGERPRINT USER FROM TO [PARALLEL]
if arg and arg[1] == "one" then
  local dir, port, key, fp, user, from, to, par = arg[2], tonumber(arg[3]), arg[4], arg[5], arg[6], arg[7], arg[8],
    tonumber(arg[9])
  local acct = connkit.integration {
    name = "bench", key = "sftpbench", auth = "sftp",
    sftp = { host = "127.0.0.1", port = port, host_key = fp },
  }:account { credentials = { username = user, private_key = key } }
  local s = assert(acct:sftp())
  assert(s[dir](s, from, to, par and { parallel = par } or nil))
  s:close()
  os.exit(0)
end

local MIB = tonumber(os.getenv("SFTP_BENCH_MIB") or "256")
local RUNS = tonumber(os.getenv("SFTP_BENCH_RUNS") or "7")
local PARALLEL = tonumber(os.getenv("SFTP_BENCH_PARALLEL") or "")
local PROFILE = os.getenv("SFTP_BENCH_PROFILE") ~= "off"
local size = MIB * 1024 * 1024
local TICK = 1 / (tonumber((select(2, helpers.run("getconf CLK_TCK")) or ""):match("%d+")) or 100)

-- user + sys seconds of this process and of its waited-for children
local function cpu_times()
  local f = assert(io.open("/proc/self/stat"))
  local line = f:read("*l")
  f:close()
  local rest = line:match("%) (.*)$")
  local v = {}
  for x in rest:gmatch("%S+") do v[#v + 1] = x end
  -- after "pid (comm) ": state=1 ... utime=12 stime=13 cutime=14 cstime=15
  return (tonumber(v[12]) + tonumber(v[13])) * TICK, (tonumber(v[14]) + tonumber(v[15])) * TICK
end

local info = helpers.peer("sshd")
local ok, err = pcall(function()
  local base = info.base
  local src = base .. "/src.bin"
  assert(helpers.run(("head -c %d /dev/urandom > %s"):format(size, q(src))))
  local rsrc = info.dir .. "/src.bin"
  assert(helpers.run(("cp %s %s && chmod 644 %s"):format(q(src), q(rsrc), q(rsrc))))
  local key = info.keys.ed25519.path
  local fp = info.host_keys["ssh-ed25519"].fingerprint
  local kh = base .. "/bench_known_hosts"
  helpers.write_file(kh, ("[127.0.0.1]:%d %s\n"):format(info.port, info.host_keys["ssh-ed25519"].pub))

  local acct = connkit.integration {
    name = "bench", key = "sftpbench", auth = "sftp",
    sftp = { host = "127.0.0.1", port = info.port, host_key = fp },
  }:account { credentials = { username = info.user, private_key = key } }
  local topts = PARALLEL and { parallel = PARALLEL } or nil

  local function file_size(path)
    local f = io.open(path, "rb")
    if not f then return -1 end
    local n = f:seek("end")
    f:close()
    return n
  end

  -- runs fn; returns MiB/s and the client's CPU seconds per GiB
  local function timed(fn, check, in_process)
    os.remove(check)
    local s0, c0 = cpu_times()
    local t0 = socket.gettime()
    fn()
    local dt = socket.gettime() - t0
    local s1, c1 = cpu_times()
    local got = file_size(check)
    if got ~= size then error(("transfer wrote %d bytes of %d to %s"):format(got, size, check)) end
    local cpu = in_process and (s1 - s0) or (c1 - c0)
    return MIB / dt, cpu * 1024 / MIB
  end

  local tools = {
    connkit = {
      in_process = true,
      get = function(dst)
        local s = assert(acct:sftp())
        assert(s:get(rsrc, dst, topts))
        s:close()
      end,
      put = function(dst)
        local s = assert(acct:sftp())
        assert(s:put(src, dst, topts))
        s:close()
      end,
    },
    openssh = (function()
      local batch = base .. "/batch"
      local function run(cmd)
        helpers.write_file(batch, cmd .. "\n")
        local rok, out = helpers.run(("sftp -q -b %s -P %d -i %s -o IdentitiesOnly=yes -o BatchMode=yes"
          .. " -o UserKnownHostsFile=%s %s@127.0.0.1"):format(q(batch), info.port, q(key), q(kh), info.user))
        if not rok then error("sftp: " .. out) end
      end
      return {
        get = function(dst) run(("get %s %s"):format(q(rsrc), q(dst))) end,
        put = function(dst) run(("put %s %s"):format(q(src), q(dst))) end,
      }
    end)(),
    curl = (function()
      local common = ("curl -sS --key %s --pubkey %s -u %s: --hostpubsha256 %s "):format(q(key), q(key .. ".pub"),
        -- curl's libssh2 prefers the ECDSA host key
        info.user, q(info.host_keys["ecdsa-sha2-nistp256"].fingerprint:gsub("^SHA256:", "") .. "="))
      local function run(cmd)
        local rok, out = helpers.run(common .. cmd)
        if not rok then error("curl: " .. out) end
      end
      return {
        get = function(dst) run(("-o %s sftp://127.0.0.1:%d%s"):format(q(dst), info.port, rsrc)) end,
        put = function(dst) run(("-T %s sftp://127.0.0.1:%d%s"):format(q(src), info.port, dst)) end,
      }
    end)(),
  }
  local order = { "connkit", "openssh", "curl" }
  local speed, cpu = {}, {}
  for _, t in ipairs(order) do speed[t] = { get = {}, put = {} }; cpu[t] = { get = {}, put = {} } end

  io.write(("sftp bench: %d MiB file, %d runs, loopback, ed25519 key login (libssh2 %s)%s\n"):format(MIB, RUNS,
    require("connkit.core").libssh2_version, PARALLEL and (", connkit parallel = " .. PARALLEL) or ""))
  io.flush()
  for run = 1, RUNS do
    for i = 0, #order - 1 do -- rotate the order so no tool always goes first
      local t = order[(run + i - 1) % #order + 1]
      local ldst = base .. "/get-" .. t .. ".bin"
      local rdst = info.dir .. "/put-" .. t .. ".bin"
      for _, dir in ipairs({ "get", "put" }) do
        local dst = dir == "get" and ldst or rdst
        local mbs, c = timed(function() tools[t][dir](dst) end, dst, tools[t].in_process)
        table.insert(speed[t][dir], mbs)
        table.insert(cpu[t][dir], c)
      end
      os.remove(ldst)
      os.remove(rdst)
    end
    io.write(".")
    io.flush()
  end
  io.write("\n")

  local function median(list)
    local c = {}
    for i, v in ipairs(list) do c[i] = v end
    table.sort(c)
    local m = #c
    return m % 2 == 1 and c[(m + 1) / 2] or (c[m / 2] + c[m / 2 + 1]) / 2, c[1], c[m]
  end
  local function fmt(list, f)
    local m, lo, hi = median(list)
    return (f .. " (" .. f .. ".." .. f .. ")"):format(m, lo, hi)
  end
  io.write(("%-9s %-24s %-24s %-22s %-22s\n"):format("", "get MiB/s", "put MiB/s", "get CPU s/GiB", "put CPU s/GiB"))
  io.write(("%-9s %-24s %-24s %-22s %-22s\n"):format("", "median (min..max)", "median (min..max)",
    "median (min..max)", "median (min..max)"))
  for _, t in ipairs(order) do
    io.write(("%-9s %-24s %-24s %-22s %-22s\n"):format(t, fmt(speed[t].get, "%.1f"), fmt(speed[t].put, "%.1f"),
      fmt(cpu[t].get, "%.2f"), fmt(cpu[t].put, "%.2f")))
  end
  -- each run's own ratio: both tools saw that run's machine
  local function ratios(other, dir)
    local r = {}
    for i = 1, RUNS do r[i] = speed.connkit[dir][i] / speed[other][dir][i] end
    return r
  end
  local summary = os.getenv("BENCH_SUMMARY")
  local sf = summary and summary ~= "" and io.open(summary, "a")
  local function out(line)
    io.write(line, "\n")
    if sf then sf:write(line, "\n") end
  end
  local TARGET = 1.15 -- against OpenSSH (issue 16); curl's ratios are shown as they are
  for _, other in ipairs({ "openssh", "curl" }) do
    local gr, pr = ratios(other, "get"), ratios(other, "put")
    local g, p = median(gr), median(pr)
    local verdict = ""
    if other == "openssh" then
      verdict = (" (target >= %.2fx: get %s, put %s)"):format(TARGET, g >= TARGET and "OK" or "MISSED",
        p >= TARGET and "OK" or "MISSED")
    end
    out(("sftp wall vs %s (%d MiB, %d runs%s): get %.0f vs %.0f MiB/s, ratio %s; put %.0f vs %.0f MiB/s, ratio %s%s")
      :format(other, MIB, RUNS, PARALLEL and (", parallel " .. PARALLEL) or "", median(speed.connkit.get),
        median(speed[other].get), fmt(gr, "%.2fx"), median(speed.connkit.put), median(speed[other].put),
        fmt(pr, "%.2fx"), verdict))
  end
  out(("sftp client CPU s/GiB (user+sys, median of %d): get connkit %.2f, openssh %.2f, curl %.2f;"
    .. " put connkit %.2f, openssh %.2f, curl %.2f"):format(RUNS, median(cpu.connkit.get), median(cpu.openssh.get),
    median(cpu.curl.get), median(cpu.connkit.put), median(cpu.openssh.put), median(cpu.curl.put)))

  if PROFILE and helpers.execute("command -v perf >/dev/null 2>&1") then
    -- where a 64 MiB get's client CPU goes, by library (perf samples of the child)
    local pmib = math.min(64, MIB)
    local pdst = base .. "/profile.bin"
    local data = base .. "/perf.data"
    local lua = os.getenv("LUA") or "lua5.4"
    local cmd = ("perf record -q -F 2000 -o %s -- %s bench/sftp_bench.lua one get %d %s %s %s %s %s %s"):format(
      q(data), q(lua), info.port, q(key), q(fp), q(info.user), q(rsrc), q(pdst), PARALLEL or "")
    if pmib < MIB then -- profile the first pmib MiB only: a file of that size
      local psrc = info.dir .. "/profile-src.bin"
      assert(helpers.run(("head -c %d %s > %s"):format(pmib * 1024 * 1024, q(rsrc), q(psrc))))
      cmd = cmd:gsub(q(rsrc):gsub("%p", "%%%0"), (q(psrc):gsub("%%", "%%%%")))
    end
    local pok, pout = helpers.run(cmd .. " 2>&1")
    local rok, rep = false, ""
    if pok then rok, rep = helpers.run(("perf report -i %s --stdio --sort dso 2>/dev/null"):format(q(data))) end
    if pok and rok then
      local shares = {}
      for pct, dso in rep:gmatch("\n%s*([%d.]+)%%%s+(%S+)") do
        local name = dso:match("libcrypto") and "libcrypto" or dso:match("kernel") and "kernel"
          or dso:match("libc[.-]") and "libc" or dso:match("libssh2") and "libssh2"
          or dso:match("core%.so") and "connkit" or dso:match("lua") and "lua" or "other"
        shares[name] = (shares[name] or 0) + tonumber(pct)
      end
      local _, syms = helpers.run(("perf report -i %s --stdio --sort sym 2>/dev/null"):format(q(data)))
      local copies = 0
      for pct, sym in (syms or ""):gmatch("\n%s*([%d.]+)%%%s+%[.%]%s+(%S+)") do
        if sym:match("^__memmove") or sym:match("^__memcpy") or sym:match("^memcpy") or sym:match("^memmove") then
          copies = copies + tonumber(pct)
        end
      end
      out(("sftp client CPU profile (perf, %d MiB get): libcrypto %.1f%%, kernel %.1f%%, libc %.1f%% (memmove/memcpy"
        .. " %.1f%%), libssh2 %.1f%%, connkit %.2f%%, lua %.2f%%, other %.1f%%"):format(pmib, shares.libcrypto or 0,
        shares.kernel or 0, shares.libc or 0, copies, shares.libssh2 or 0, shares.connkit or 0, shares.lua or 0,
        shares.other or 0))
    else
      io.write("sftp profile skipped (perf record failed): ", tostring(pout):sub(1, 300), "\n")
    end
  end
  if sf then sf:close() end
end)
helpers.stop_peers()
helpers.execute("rm -rf " .. q(info.base))
if not ok then
  io.stderr:write("sftp bench failed: ", tostring(err), "\n")
  os.exit(1)
end
