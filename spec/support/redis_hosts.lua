--- The "hosts" of the multi-host Redis specs. As root (and where `ip netns`
-- works) each host is a network namespace with a veth on one private
-- bridge; the peers (redis-server, oidc-provider) keep listening on
-- 127.0.0.1 and a small forwarder makes chosen ports reachable at the
-- bridge address. Otherwise every host is a set of plain processes on
-- loopback, and `kind` says so.
--
--   hosts = new(helpers, n)
--   hosts.kind            "namespaces" | "loopback"
--   hosts.addr            where the hosts reach the peers
--   hosts.expose(port)    127.0.0.1:port reachable at hosts.addr:port
--   hosts.url(u)          u with 127.0.0.1 replaced by hosts.addr
--   hosts.spawn(h, name, cmd, env) -> proc   cmd run on host h
--   hosts.stop()          removes the namespaces, bridge and forwarders
local socket = require "socket"
local core = require "connkit.core"

local M = {}

-- A plain TCP forwarder: listens on ADDR:port for each port given and
-- copies both ways to 127.0.0.1:port.
local FORWARDER = [[
const net = require('net');
const [addr, ...ports] = process.argv.slice(1);
for (const p of ports) {
  net.createServer((c) => {
    const u = net.connect(+p, '127.0.0.1');
    c.pipe(u); u.pipe(c);
    c.on('error', () => u.destroy()); u.on('error', () => c.destroy());
    c.on('close', () => u.destroy()); u.on('close', () => c.destroy());
  }).listen(+p, addr);
}
]]

local function can_use_namespaces(helpers)
  if os.getenv("REDIS_HOSTS_LOOPBACK") == "1" then return false end
  local _, id = helpers.run("id -u")
  if id:match("%d+") ~= "0" then return false end
  return helpers.execute("command -v ip >/dev/null 2>&1")
end

function M.new(helpers, n)
  local q = helpers.shell_quote
  local hosts = { n = n }
  local forwarders = {}

  local function wait_listen(addr, port)
    for _ = 1, 200 do
      local c = socket.tcp()
      c:settimeout(0.2)
      local ok = c:connect(addr, port)
      c:close()
      if ok then return end
      socket.sleep(0.025)
    end
    error(("redis_hosts: nothing listens on %s:%d"):format(addr, port))
  end

  if can_use_namespaces(helpers) then
    local rnd = core.random(3)
    local tag = core.hex(rnd:sub(1, 2))
    local net = ("10.%d.%d"):format(200 + rnd:byte(3) % 50, 1 + rnd:byte(1) % 254)
    local bridge = "ckbr" .. tag
    hosts.kind, hosts.addr, hosts.bridge = "namespaces", net .. ".1", bridge
    hosts.names = {}
    local function sh(cmd)
      local ok, out = helpers.run(cmd)
      if not ok then error("redis_hosts: `" .. cmd .. "` failed: " .. out, 2) end
    end
    sh(("ip link add %s type bridge && ip addr add %s/24 dev %s && ip link set %s up"):format(
      bridge, hosts.addr, bridge, bridge))
    for h = 1, n do
      local ns = "ckh" .. tag .. "-" .. h
      local vh, vb = "ckv" .. tag .. h .. "a", "ckv" .. tag .. h .. "b"
      hosts.names[h] = ns
      sh(("ip netns add %s && ip link add %s type veth peer name %s && ip link set %s netns %s")
        :format(ns, vh, vb, vh, ns))
      sh(("ip link set %s master %s && ip link set %s up"):format(vb, bridge, vb))
      sh(("ip netns exec %s sh -c %s"):format(ns, q(("ip addr add %s.%d/24 dev %s && ip link set %s up && ip link set lo up")
        :format(net, 10 + h, vh, vh))))
    end
  else
    hosts.kind, hosts.addr = "loopback", "127.0.0.1"
  end

  function hosts.expose(port)
    if hosts.kind ~= "namespaces" then return end
    local proc = helpers.spawn("nsfwd", "node -e " .. q(FORWARDER) .. " " .. hosts.addr .. " " .. port)
    forwarders[#forwarders + 1] = proc
    wait_listen(hosts.addr, port)
  end

  function hosts.url(u)
    return (u:gsub("127%.0%.0%.1", hosts.addr))
  end

  --- Runs `cmd` (words already quoted) on host h with `env` (a table).
  function hosts.spawn(h, name, cmd, env)
    local words = {}
    for k, v in pairs(env or {}) do words[#words + 1] = k .. "=" .. q(v) end
    table.sort(words)
    local line = "env " .. table.concat(words, " ") .. " " .. cmd
    if hosts.kind == "namespaces" then
      line = "ip netns exec " .. hosts.names[(h - 1) % n + 1] .. " " .. line
    end
    return helpers.spawn(name, line)
  end

  function hosts.stop()
    for _, p in ipairs(forwarders) do helpers.stop(p) end
    forwarders = {}
    if hosts.kind == "namespaces" then
      for _, ns in ipairs(hosts.names) do helpers.execute("ip netns del " .. ns .. " 2>/dev/null") end
      helpers.execute("ip link del " .. hosts.bridge .. " 2>/dev/null")
    end
  end
  return hosts
end

return M
