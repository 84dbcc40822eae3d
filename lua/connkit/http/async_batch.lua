--- connkit.all: runs prepared requests with a concurrency limit (see
-- connkit.http.async for the handles it may use). A batch of plain
-- requests (static auth, nothing to follow or retry) runs in C on the
-- engine; any other batch runs as handles.
-- @module connkit.http.async_batch
local core = require "connkit.core"
local request = require "connkit.http.request"
local check = require "connkit.check"
local transport = require "connkit.transport"
local threads = require "connkit.http.threads"

local ALL_OPTIONS = { concurrency = "count" }
local RequestMT = request.RequestMT

local M = {}

-- Plain requests (static auth, nothing to follow or retry) whose header
-- lines are up to date: the batch runs in C and each is done with its reply.
local function run_plain(reqs, n)
  local results, nfailed = transport.curl.run(reqs, n)
  if nfailed > 0 then
    for i = 1, #reqs do
      local r = results[i]
      if not r.res then
        local _, err = request.fail(reqs[i], r.code, r.message)
        err.attempts = 1
        r.err, r.code, r.message = err, nil, nil
      end
    end
  end
  return results
end

-- Any other batch: a handle per request, up to n in flight, so a token
-- fetch, a refresh after 401/403 and a retry wait never block the others,
-- and requests of one account share its renewal (one token request).
local function run_handles(reqs, n)
  local total, results, active, nexti = #reqs, {}, {}, 1
  local function cancel_all()
    for _, a in ipairs(active) do a[2]:cancel() end
  end
  local ok, err = pcall(function()
    while nexti <= total or #active > 0 do
      while #active < n and nexti <= total do
        active[#active + 1] = { nexti, reqs[nexti]:start() }
        nexti = nexti + 1
      end
      local finished, wait, j = false, 1, 1
      while j <= #active do
        local i, h = active[j][1], active[j][2]
        if h:done() then
          local res, herr = h:result()
          results[i] = { res = res, err = herr }
          table.remove(active, j)
          finished = true
        else
          if h._retry_at then wait = math.min(wait, math.max(0, h._retry_at - core.now())) end
          if h._task then wait = math.min(wait, math.max(0, h._deadline - core.now())) end
          j = j + 1
        end
      end
      if not finished and #active > 0 then
        local t = transport.curl
        if t.pending() > 0 then t.poll(wait) else t.sleep(wait) end
      end
    end
  end)
  if not ok then
    cancel_all()
    error(err, 0)
  end
  return results
end

--- Runs prepared requests with up to `concurrency` in flight; returns
-- { { res = ..., err = ... }, ... } in the order of the input. Requests
-- with static auth and nothing to follow or retry run as one batch in C;
-- any other batch runs as handles (the same rules as send(); see
-- req:start() in connkit.http.async).
-- @tparam {Request,...} reqs prepared requests (`account:prepare`)
-- @tparam[opt] table opts `concurrency`: transfers in flight at once
--   (default 8)
-- @treturn {table,...} one `{ res = response }` or `{ err = error }` per
--   request, in the order of `reqs`
-- @raise when `reqs` is not a list or an option is bad (naming it)
function M.all(reqs, opts)
  if type(reqs) ~= "table" then check.raise("connkit.all: requests must be a list, not a " .. type(reqs)) end
  local n = check.options("connkit.all", opts, ALL_OPTIONS).concurrency or 8
  local plain = true
  for i = 1, #reqs do
    local req = reqs[i]
    local acct = type(req) == "table" and req._account
    if not (acct and req._plain and req._src_lines == acct._lines) then
      if not acct or getmetatable(req) ~= RequestMT then
        check.raise("connkit.all: item " .. i .. " is not a prepared request")
      end
      plain = false
    end
  end
  if not transport.curl_only then
    local t = transport.current()
    if t.spawn then return threads.all(reqs, n, t) end
  end
  if plain then return run_plain(reqs, n) end
  return run_handles(reqs, n)
end

return M
