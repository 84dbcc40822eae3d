--- The rate-limit bucket of `connkit.store.shared` (its `rate_take`): one
-- bucket per scope key in the shared dict, so every worker of the nginx
-- keeps one pace. The same GCRA as the in-process bucket
-- (`connkit.http.rate_limit.take`) and the Redis script: the entry holds the
-- scope's "theoretical arrival time" (epoch seconds).
--
-- A dict has no compare-and-set, so a read-modify-write of the entry is
-- guarded by a short lock entry (`safe_add`, expiring after `LOCK_TTL` in
-- case a worker dies holding it). The holder does get, compute, set and
-- delete without yielding: it holds the lock for microseconds, and never
-- while a request waits for its slot (the wait happens in the caller, after
-- rate_take returns). A worker that finds the lock taken tries again after a
-- pause (`ngx.sleep` where the phase can yield).
-- @module connkit.store.shared_rate
-- @local
local core = require "connkit.core"
local cosync = require "connkit.cosync"
local errors = require "connkit.errors"

local max, ceil = math.max, math.ceil

local M = {}

local LOCK_TTL = 0.1        -- seconds: a dead holder blocks the bucket no longer
local GIVE_UP = 1           -- seconds of trying to take the lock before failing
local PAUSE = 0.0005        -- seconds between two tries

local function pause()
  if cosync.ngx_can_yield() then rawget(_G, "ngx").sleep(PAUSE) else core.sleep(PAUSE) end
end

local function bucket_key(scope_key) return "connkit/rate/" .. scope_key end

--- The `rate_take(scope_key, per_second, burst, at, limit)` of a shared
-- store on `dict` (`where` names the store in errors, `check_id(id,
-- fname)` raises for a bad scope key): the seconds from
-- `at` until the first free slot of the scope's bucket, reserved unless
-- that is more than `limit` (the contract of a store's `rate_take`,
-- README "Writing your own store").
-- @param dict the `ngx.shared` dict
-- @tparam string where the store's name for messages
-- @tparam function check_id raises for a bad scope key
-- @treturn function `rate_take(scope_key, per_second, burst, at, limit)`
function M.taker(dict, where, check_id)
  return function(scope_key, per_second, burst, at, limit)
    check_id(scope_key, "rate_take")
    local key = bucket_key(scope_key)
    local lkey = key .. "/lock"
    local deadline = core.now() + GIVE_UP
    while true do
      local ok, err = dict:safe_add(lkey, true, LOCK_TTL)
      if ok then break end
      if err ~= "exists" then
        return nil, errors.new("store", ("%s: the rate limit of %q cannot be taken (%s)")
          :format(where, scope_key, tostring(err)))
      end
      if core.now() > deadline then
        return nil, errors.new("store", ("%s: the rate limit of %q stayed locked for %s s")
          :format(where, scope_key, core.format_number(GIVE_UP)))
      end
      pause()
    end
    -- from here to the delete: no yield
    local interval = 1 / per_second
    local tat = dict:get(key)
    if type(tat) ~= "number" or tat < at then tat = at end
    local wait = max(0, tat - (burst - 1) * interval - at)
    if wait <= limit then
      tat = tat + interval
      -- forgotten once the bucket is full again (plus a second of slack)
      local ok, err = dict:safe_set(key, tat, max(0.001, ceil(tat - core.now()) + 1))
      if not ok then
        dict:delete(lkey)
        return nil, errors.new("store", ("%s: the rate limit of %q cannot be written (%s)")
          :format(where, scope_key, tostring(err)))
      end
    end
    dict:delete(lkey)
    return wait
  end
end

return M
