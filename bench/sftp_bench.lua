--- SFTP benchmark: connkit against OpenSSH `sftp -b` (default settings) and
-- `curl sftp://`, on loopback against the spec's sshd peer, get and put of
-- one file, several interleaved runs each. Every tool logs in with the same
-- ed25519 key and checks the host key; every timing covers connect, login
-- and the transfer. Prints MiB/s (median and best of the runs) and ratios.
-- Env: SFTP_BENCH_MIB (default 256), SFTP_BENCH_RUNS (default 5).
local helpers = require "helpers"
local socket = require "socket"
local connkit = require "connkit"
local q = helpers.shell_quote

local MIB = tonumber(os.getenv("SFTP_BENCH_MIB") or "256")
local RUNS = tonumber(os.getenv("SFTP_BENCH_RUNS") or "5")
local size = MIB * 1024 * 1024

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

  local function file_size(path)
    local f = io.open(path, "rb")
    if not f then return -1 end
    local n = f:seek("end")
    f:close()
    return n
  end

  local function timed(fn, check)
    os.remove(check)
    local t0 = socket.gettime()
    fn()
    local dt = socket.gettime() - t0
    local got = file_size(check)
    if got ~= size then error(("transfer wrote %d bytes of %d to %s"):format(got, size, check)) end
    return MIB / dt
  end

  local tools = {
    connkit = {
      get = function(dst)
        local s = assert(acct:sftp())
        assert(s:get(rsrc, dst))
        s:close()
      end,
      put = function(dst)
        local s = assert(acct:sftp())
        assert(s:put(src, dst))
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
  local results = {}
  for _, t in ipairs(order) do results[t] = { get = {}, put = {} } end

  io.write(("sftp bench: %d MiB file, %d runs, loopback, ed25519 key login (libssh2 %s)\n"):format(MIB, RUNS,
    require("connkit.core").libssh2_version))
  io.flush()
  for run = 1, RUNS do
    for i = 0, #order - 1 do -- rotate the order so no tool always goes first
      local t = order[(run + i - 1) % #order + 1]
      local ldst = base .. "/get-" .. t .. ".bin"
      local rdst = info.dir .. "/put-" .. t .. ".bin"
      table.insert(results[t].get, timed(function() tools[t].get(ldst) end, ldst))
      table.insert(results[t].put, timed(function() tools[t].put(rdst) end, rdst))
      os.remove(ldst)
      os.remove(rdst)
    end
  end

  local function median(list)
    local c = {}
    for i, v in ipairs(list) do c[i] = v end
    table.sort(c)
    local m = #c
    return m % 2 == 1 and c[(m + 1) / 2] or (c[m / 2] + c[m / 2 + 1]) / 2, c[m]
  end
  io.write(("%-10s %16s %16s\n"):format("", "get MiB/s", "put MiB/s"))
  io.write(("%-10s %16s %16s\n"):format("", "median (best)", "median (best)"))
  local med = {}
  for _, t in ipairs(order) do
    local gm, gb = median(results[t].get)
    local pm, pb = median(results[t].put)
    med[t] = { get = gm, put = pm }
    io.write(("%-10s %8.1f (%5.1f) %8.1f (%5.1f)\n"):format(t, gm, gb, pm, pb))
  end
  local summary = os.getenv("BENCH_SUMMARY")
  local sf = summary and summary ~= "" and io.open(summary, "a")
  local targets = { openssh = 1.0, curl = 1.5 }
  for _, other in ipairs({ "openssh", "curl" }) do
    local g, p = med.connkit.get / med[other].get, med.connkit.put / med[other].put
    io.write(("connkit / %-8s get %.2fx   put %.2fx\n"):format(other, g, p))
    if sf then
      local t = targets[other]
      sf:write(("sftp vs %s (%d MiB, median of %d): get %.0f vs %.0f MiB/s = %.2fx, put %.0f vs %.0f MiB/s = %.2fx"
        .. " (target >= %.1fx: get %s, put %s)\n"):format(other, MIB, RUNS, med.connkit.get, med[other].get, g,
        med.connkit.put, med[other].put, p, t, g >= t and "OK" or "MISSED", p >= t and "OK" or "MISSED"))
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
