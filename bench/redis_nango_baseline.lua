-- The baseline of bench/redis_bench.lua: Nango's token lock written as a
-- connkit store (loaded by spec/support/redis_worker.lua through
-- RW_STORE_SCRIPT). Records are plain JSON under nango:<id>; the lock is
-- `SET nango:lock:<id> 1 NX PX 10000`, polled every 50 ms for up to 10 s,
-- and released with a plain DEL (no owner, no fence), as Nango does. The
-- refresh rules around it are connkit's own (lock, re-read, refresh only if
-- still due, write, unlock): what differs is the lock alone.
-- NANGO_PORT, NANGO_PASSWORD: the redis-server on 127.0.0.1.
local core = require "connkit.core"
local cjson = require "cjson"
local encode = require("connkit.json").encode

local port, password = tonumber(os.getenv("NANGO_PORT")), os.getenv("NANGO_PASSWORD")
local conn
local function cmd(...)
  if not (conn and conn:usable()) then
    conn = assert(core.redis_connect("127.0.0.1", port, 2))
    if password and password ~= "" then assert(conn:command("AUTH", password)) end
  end
  local reply, code, msg = conn:command(...)
  if reply == nil then error("redis: " .. tostring(code) .. " " .. tostring(msg)) end
  return reply
end

local store = {}
function store.get(id)
  local v = cmd("GET", "nango:" .. id)
  if not v then return nil end
  return cjson.decode(v)
end
function store.put(id, rec)
  if rec == nil then cmd("DEL", "nango:" .. id) else cmd("SET", "nango:" .. id, encode(rec)) end
  return true
end
function store.lock(id)
  local deadline = core.now() + 10
  while not cmd("SET", "nango:lock:" .. id, "1", "NX", "PX", 10000) do
    if core.now() > deadline then return nil, "lock acquisition timed out" end
    core.sleep(0.05)
  end
  return function() cmd("DEL", "nango:lock:" .. id) end
end
return store
