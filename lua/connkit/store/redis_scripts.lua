--- The server-side Lua scripts of the Redis store, run with EVALSHA (loaded
-- on first use and again after NOSCRIPT). Every client of the store (hiredis
-- outside OpenResty, resty.redis inside) runs these same scripts on the same
-- layout, so a fleet may mix them.
--
-- Layout per account (both keys carry the same `{tag}`, one hash slot):
--   KEYS record  a hash: v (version, only grows), data (the record, sealed
--                or JSON; absent when there is none), inflight (the lock
--                owner that started a token request and has not committed)
--   KEYS lock    a string: the owner (128 random bits, hex), with a TTL
--
-- Replies are short words the store turns into error codes: "lock_lost"
-- (the caller no longer owns the lock), "version" (the record changed since
-- the caller read it).
-- @module connkit.store.redis_scripts
local M = {}

--- Deletes the lock only when `owner` still holds it. KEYS: lock;
-- ARGV: owner. Returns 1 when it was deleted, 0 otherwise.
M.unlock = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
]]

--- The fenced commit: writes `data` (or removes the record for "") as
-- version `expected + 1`, only when no other holder has the lock and the
-- version is still `expected`; clears the in-flight mark. A lease that ran
-- out with nobody taking the lock since does not refuse the commit: the
-- version shows nothing was written meanwhile, and refusing would throw
-- away a refresh token the server has already rotated. KEYS: record, lock;
-- ARGV: owner, expected version, data. Returns the new version, or
-- "lock_lost" / "version".
M.commit = [[
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return 'lock_lost' end
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[2]) then return 'version' end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], 'data')
else
  redis.call('HSET', KEYS[1], 'data', ARGV[3])
end
redis.call('HDEL', KEYS[1], 'inflight')
redis.call('HSET', KEYS[1], 'v', v + 1)
return v + 1
]]

--- A write outside the lock (store.put): compare-and-set on the version
-- alone. KEYS: record; ARGV: expected version, data ("" removes). Returns
-- the new version or "version".
M.put = [[
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return 'version' end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], 'data')
else
  redis.call('HSET', KEYS[1], 'data', ARGV[2])
end
redis.call('HDEL', KEYS[1], 'inflight')
redis.call('HSET', KEYS[1], 'v', v + 1)
return v + 1
]]

--- Marks the record "refresh in flight" before a token request, only when
-- no other holder has the lock and the version is the one the caller read;
-- a lock whose lease ran out with nobody taking it is taken again (for
-- ARGV[3] ms). KEYS: record, lock; ARGV: owner, expected version, lock ttl
-- (ms). Returns 1, or "lock_lost" / "version".
M.mark = [[
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return 'lock_lost' end
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[2]) then return 'version' end
if not holder then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3]) end
redis.call('HSET', KEYS[1], 'inflight', ARGV[1])
return 1
]]

--- The shared rate-limit bucket (connkit.http.rate_limit, a store's
-- rate_take): a GCRA "theoretical arrival time" per scope, on the server's
-- clock (TIME), so that hosts whose clocks differ share one pace. Reserves
-- the first free slot at or after now + ahead and returns the seconds from
-- then until it, as a string; reserves nothing when that is more than
-- limit. The key expires once the bucket is full again. KEYS: bucket;
-- ARGV: per_second, burst, ahead (s), limit (s).
M.rate_take = [[
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local interval = 1 / tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local at = now + tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < at then tat = at end
local wait = tat - (burst - 1) * interval - at
if wait < 0 then wait = 0 end
if wait > tonumber(ARGV[4]) then return tostring(wait) end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
return tostring(wait)
]]

local unpack = table.unpack or unpack

--- `client:eval(script, keys, args)` for both wire clients
-- (connkit.store.redis_hiredis and connkit.store.redis_resty): EVALSHA by the script's SHA1, loading the
-- script on first use and once more after NOSCRIPT (the server forgot it:
-- restarted, SCRIPT FLUSH). The client has `command(word, ...)` and a
-- `shas` table (script -> SHA1).
-- @tparam table client the wire client
-- @tparam string script the script's source
-- @tparam table keys the KEYS
-- @tparam table args the ARGV
-- @tparam[opt] boolean reloaded the script was loaded again already (internal)
-- @return[1] the script's reply
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.evalsha(client, script, keys, args, reloaded)
  local sha = client.shas[script]
  if not sha then
    local err
    sha, err = client:command("SCRIPT", "LOAD", script)
    if not sha then return nil, err end
    client.shas[script] = sha
  end
  local words = { "EVALSHA", sha, #keys }
  for _, k in ipairs(keys) do words[#words + 1] = k end
  for _, a in ipairs(args) do words[#words + 1] = a end
  local reply, err = client:command(unpack(words))
  if reply == nil and err.redis_error and err.message:find("NOSCRIPT", 1, true) and not reloaded then
    client.shas[script] = nil
    return M.evalsha(client, script, keys, args, true)
  end
  return reply, err
end

return M
