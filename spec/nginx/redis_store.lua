-- connkit.store.redis inside nginx (spec/nginx_redis_spec.lua): one store
-- operation per request, with the store made in the request (no connection
-- is kept across requests; the resty client takes one from the worker's
-- pool). args: op, conf (a file: URL and key), id, token, timeout, lock_ttl, lock_timeout,
-- wait.
--   op=put    puts { access_token = token } for id
--   op=get    the record of id (its access_token), or none
--   op=lock   waits up to `wait` s for the lock of id, then releases it
--   op=init   uses the store made in init_by_lua (see init_op)
--   op=served the workers that served redis_call for args.name
-- Every op returns { ok, code, message, took, pid, resty } (resty: whether
-- connkit.store.redis_resty was loaded in this worker by then).
local connkit = require "connkit"

-- the store's URL and key, read from the file args.conf (one a line), so
-- the password and the key are not in the request line nginx logs
local function conf(args)
  local f = assert(io.open(args.conf, "rb"))
  local url, key = f:read("*l", "*l")
  f:close()
  return url, key
end

local function number(v) return v and tonumber(v) or nil end

-- op=init: the store made in init_by_lua (spec/nginx_redis_spec.lua)
-- reads "from-init", writes it again and takes its lock
local function init_op()
  local made = package.loaded["spec.redis_init_store"]
  local s = made.store
  local out = { init_hiredis = made.hiredis, init_resty = made.resty }
  local rec, err = s.get("from-init")
  out.access_token = rec and rec.access_token
  local ok
  if rec then ok, err = s.put("from-init", { access_token = "from-request" }) end
  if ok then
    local unlock
    unlock, err = s.lock("from-init", 1)
    ok = unlock and unlock() or nil
  end
  out.ok = ok == true
  if err then out.code, out.message = err.code, err.message end
  out.resty = package.loaded["connkit.store.redis_resty"] ~= nil
  return out
end

return function(args)
  if args.op == "init" then return init_op() end
  if args.op == "served" then
    -- the workers that served redis_call for args.name: { [pid] = calls }
    local out = {}
    for _, k in ipairs(ngx.shared.fleet:get_keys(0)) do
      local pid = k:match("^served/" .. args.name:gsub("%p", "%%%0") .. "/(%d+)$")
      if pid then out[pid] = ngx.shared.fleet:get(k) end
    end
    return out
  end
  local url, key = conf(args)
  local s = connkit.store.redis {
    url = url, key = key, timeout = number(args.timeout),
    lock_ttl = number(args.lock_ttl), lock_timeout = number(args.lock_timeout),
  }
  ngx.update_time()
  local t0 = ngx.now()
  local out = {}
  local res, err
  if args.op == "put" then
    res, err = s.put(args.id, { access_token = args.token })
  elseif args.op == "get" then
    res, err = s.get(args.id)
    if res then out.access_token = res.access_token end
  elseif args.op == "lock" then
    local unlock
    unlock, err = s.lock(args.id, number(args.wait))
    if unlock then res = unlock() end
  else
    error("unknown op " .. tostring(args.op), 0)
  end
  ngx.update_time()
  out.took = ngx.now() - t0
  out.ok = res ~= nil
  if err then out.code, out.message = err.code, err.message end
  out.pid = ngx.worker.pid()
  out.resty = package.loaded["connkit.store.redis_resty"] ~= nil
  out.hiredis = package.loaded["connkit.store.redis_hiredis"] ~= nil
  return out
end
