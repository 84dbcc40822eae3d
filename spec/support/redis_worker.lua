-- A worker process of the multi-host Redis specs (spec/store_redis_hosts_spec.lua):
-- one shared account on connkit.store.redis making requests to the oidc
-- peer's protected resource. Settings come from the environment:
--   RW_ISSUER RW_URL RW_KEY RW_ID RW_GRANT (code | cc)
--   RW_COUNT requests (or RW_SECONDS of requests), RW_GAP seconds between
--   RW_LOCK_TTL, RW_TIMEOUT (request timeout)
--   RW_STORE_SCRIPT a Lua file returning the store to use instead (the
--     benchmark's baseline)
--   RW_FAIL a test-only fail point, set on this worker's store from outside
--     the library: kill_holding / stop_holding (SIGKILL / SIGSTOP itself
--     while it holds the lock, before its token request), kill_before_commit
--     / stop_before_commit (after the token reply, before its commit);
--     RW_MARK is written when it fires.
-- Prints one line per failed request ("fail: code message") and at the end
-- "ok=N fail=M token_sha256=<hex of the token in use>".
local connkit = require "connkit"
local core = require "connkit.core"
local account = require "support.redis_account"

local env = os.getenv
local store
if env("RW_STORE_SCRIPT") then
  -- another store (bench/redis_nango_baseline.lua): a file returning it
  store = dofile(env("RW_STORE_SCRIPT"))
else
  store = connkit.store.redis { url = env("RW_URL"), key = env("RW_KEY"),
    lock_ttl = tonumber(env("RW_LOCK_TTL")) or 30, timeout = 2 }
end

local fail_point = env("RW_FAIL")
local function self_pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*l"):match("^(%d+)")
  f:close()
  return pid
end

-- the fail point: fires once, at the place named
local function reached(where)
  if not fail_point or fail_point:match("_(.*)$") ~= where then return end
  local action = fail_point:match("^(%a+)_")
  fail_point = nil
  local mark = assert(io.open(env("RW_MARK"), "w"))
  mark:write(where, "\n")
  mark:close()
  os.execute(("kill -%s %s"):format(action == "kill" and "9" or "STOP", self_pid()))
  if action == "kill" then core.sleep(60) end
end

if fail_point then
  local lock = store.lock
  store.lock = function(id, max_wait)
    local unlock, held = lock(id, max_wait)
    if held then
      local begin, put = held.begin, held.put
      held.begin = function() reached("holding") return begin() end
      held.put = function(rec) reached("before_commit") return put(rec) end
    end
    return unlock, held
  end
end

local acct = account.account(env("RW_GRANT") or "code", env("RW_ISSUER"), env("RW_ID"), store)
local count, seconds = tonumber(env("RW_COUNT")), tonumber(env("RW_SECONDS"))
local gap = tonumber(env("RW_GAP")) or 0.1
local timeout = tonumber(env("RW_TIMEOUT")) or 30
local ok, fail = 0, 0
local t_end = seconds and core.now() + seconds
local n = 0
while (count and n < count) or (t_end and core.now() < t_end) do
  n = n + 1
  local res, err = acct:request { url = "/api/me", timeout = timeout }
  if res and res.status == 200 then
    ok = ok + 1
  else
    fail = fail + 1
    io.stdout:write("fail: ", res and ("status " .. res.status) or (err.code .. " " .. err.message), "\n")
  end
  io.stdout:flush()
  if gap > 0 then core.sleep(gap) end
end
local tok = acct._tok and acct._tok.access_token
io.stdout:write(("ok=%d fail=%d token_sha256=%s\n"):format(ok, fail, tok and core.hex(core.sha256(tok)) or "-"))
