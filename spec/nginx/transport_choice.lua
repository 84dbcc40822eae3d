-- Which transport connkit's requests use inside nginx, through the public
-- API: args.base (the nginx echo peer), args.slow (a location that answers
-- after 0.5 s). Returns what connkit.transport() says in the content phase,
-- in a timer and (from init_by_lua) at start; a request's reply as the peer
-- received it; and whether a request yields to nginx (another light thread
-- sleeping 0.1 s meanwhile wakes on time) or blocks it; connkit.all and
-- req:start() over it.
local connkit = require "connkit"

local function account(base)
  local api = connkit.integration {
    name = "Echo", key = "echo", auth = "api_token", base_url = base,
    auth_token = { type = "header", name = "Authorization", value = "Bearer {token}" },
    request_parameters = { headers = { ["X-Region"] = "eu" } },
  }
  return api:account { id = "t", credentials = { token = "tok" } }
end

-- seconds a 0.1 s ngx.sleep takes in another light thread while a request
-- to args.slow runs
local function sleeper_delay(acct, slow)
  ngx.update_time()
  local t0 = ngx.now() -- (spawn runs the thread up to its first yield: all of it, when curl blocks)
  local job = ngx.thread.spawn(function() return acct:get(slow) end)
  ngx.sleep(0.1)
  ngx.update_time()
  local delay = ngx.now() - t0
  local _, res, err = ngx.thread.wait(job)
  return delay, res and res.status or tostring(err)
end

return function(args)
  local acct = account(args.base)
  local out = { content = connkit.transport(), init = CONNKIT_INIT_TRANSPORT or false }
  local res, err = acct:get("/echo/x")
  out.echo = res and res.body or tostring(err)
  out.ngx_delay, out.ngx_status = sleeper_delay(acct, args.slow)
  -- connkit.all and req:start() in light threads: three 0.5 s requests at once
  local reqs = {}
  for i = 1, 3 do reqs[i] = assert(acct:prepare { method = "GET", url = args.slow }) end
  ngx.update_time()
  local t0 = ngx.now()
  local results = connkit.all(reqs, { concurrency = 3 })
  local handle = reqs[1]:start()
  out.started_done = handle:done()
  local hres = handle:result()
  ngx.update_time()
  out.all_elapsed = ngx.now() - t0
  out.all = {}
  for i, r in ipairs(results) do out.all[i] = r.res and r.res.status or tostring(r.err) end
  out.handle = hres and hres.status or false
  -- in a timer
  local sema = require("ngx.semaphore").new()
  ngx.timer.at(0, function()
    out.timer = connkit.transport()
    local r, e = acct:get("/echo/from-timer")
    out.timer_echo = r and r.body or tostring(e)
    sema:post(1)
  end)
  assert(sema:wait(10))
  -- the override, then back to the choice per call
  connkit.use_transport("curl")
  out.forced = connkit.transport()
  out.curl_delay, out.curl_status = sleeper_delay(acct, args.slow)
  connkit.use_transport("auto")
  out.auto = connkit.transport()
  return out
end
