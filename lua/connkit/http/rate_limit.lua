--- Rate limits: the integration's `rate_limit` rule (overridable per
-- request). Two gates stand before every transfer of a request (its first
-- attempt, a retry, the retry after a refresh):
--
-- * a client-side token bucket (`per_second`, `burst`) per scope (the
--   integration, or one account of it), kept as a GCRA "theoretical arrival
--   time": each transfer reserves the next free slot and waits for it, so
--   requests started together (connkit.all, handles) are spaced, not sent
--   at once. A store with `rate_take` shares the bucket across processes
--   and hosts; without it the bucket is this process's (Lua state's);
-- * a server-driven pause: a reply whose `remaining` header is 0 or less
--   makes the next transfers of the scope wait until `reset`.
--
-- A wait longer than `max_wait`, or one that would end after the request's
-- deadline, is not made: the request fails at once, unsent, with
-- err.code "rate_limited" and err.retry_at (epoch seconds). Waiting never
-- happens under a lock: the gate runs after the token is ready (the token
-- lock and the store's lock are let go by then), and before the transfer.
-- @module connkit.http.rate_limit
local core = require "connkit.core"
local check = require "connkit.check"
local retry = require "connkit.http.retry"

local now, format_number = core.now, core.format_number
local floor, max = math.floor, math.max

local M = {}

local RESET_IS = { "seconds", "epoch", "http-date" }
local SCOPES = { "account", "integration" }
local FIELDS = { remaining = true, reset = true, reset_is = true, per_second = true, burst = true,
  max_wait = true, scope = true }
-- what a request's own rate_limit may change: how it waits and how its
-- reply is read, not the bucket it shares with others
local REQUEST_FIELDS = { remaining = true, reset = true, reset_is = true, max_wait = true }

local function header_name(ctx, field, v, default)
  if v == false then return false end
  v = check.string(ctx, field, v, { default = default, pattern = "^[!#$%%&'*+%-.^_`|~%w]+$",
    pattern_msg = "must be a header name (or false: not read)" })
  return v:lower()
end

--- Checks a rate_limit table field by field (raising, naming the field)
-- and returns the rule, or nil for nil. `request` is true for a request's
-- own table (over `base`, the integration's rule or nil).
-- @tparam table ctx the check context
-- @tparam[opt] table t the rate_limit table
-- @tparam string field its name in messages
-- @tparam[opt] table base the integration's rule (for a request's table)
-- @tparam[opt] boolean request t is a request's own
-- @treturn table|nil the rule
-- @raise naming the field
function M.check(ctx, t, field, base, request)
  if t == nil then return nil end
  check.table(ctx, field, t)
  check.known_fields(ctx, t, field, FIELDS)
  if request then
    for k in pairs(t) do
      if not REQUEST_FIELDS[k] then
        ctx.fail(field .. "." .. k, "can only be set in the integration's rate_limit"
          .. " (the bucket is shared by every request of its scope)")
      end
    end
  end
  base = base or {}
  local function pick(k) if t[k] ~= nil then return t[k] end return base[k] end
  local r = {
    remaining = header_name(ctx, field .. ".remaining", pick("remaining"), "x-ratelimit-remaining"),
    reset = header_name(ctx, field .. ".reset", pick("reset"), "x-ratelimit-reset"),
    reset_is = check.string(ctx, field .. ".reset_is", pick("reset_is"), { default = "seconds", one_of = RESET_IS }),
    max_wait = check.number(ctx, field .. ".max_wait", pick("max_wait"), { default = 30, min = 0, max = 86400 }),
    scope = check.string(ctx, field .. ".scope", pick("scope"), { default = "account", one_of = SCOPES }),
  }
  r.per_second = base.per_second
  r.burst = base.burst
  if not request then
    r.per_second = check.number(ctx, field .. ".per_second", t.per_second, { min = 0.001, max = 1e6 })
    if r.per_second ~= nil and not (r.per_second < math.huge) then ctx.fail(field .. ".per_second", "must be finite") end
    r.burst = check.number(ctx, field .. ".burst", t.burst, { integer = true, min = 1, max = 1e6 })
    if r.burst and not r.per_second then ctx.fail(field .. ".burst", "needs " .. field .. ".per_second") end
    if r.per_second and not r.burst then r.burst = max(1, floor(r.per_second)) end
  end
  return r
end

--- The rule of a request: its own `rate_limit` option over the
-- integration's (false: none). Raises, naming the field, for a bad option.
-- @tparam connkit.account.Account acct the account
-- @param opt the request's rate_limit option (nil, false or a table)
-- @treturn table|nil the rule
-- @raise naming the field
function M.rule(acct, opt)
  local integ = acct.integration
  if opt == false then return nil end
  if opt == nil then return integ.rate_limit end
  return M.check(check.context("request"), opt, "rate_limit", integ.rate_limit, true)
end

---------------------------------------------------------------------------
-- In-process state, per scope key
---------------------------------------------------------------------------

local tats = {}   -- key -> the bucket's theoretical arrival time (core.now seconds)
local pauses = {} -- key -> the time (epoch seconds) the server's pause ends
local added = 0   -- keys added since the last sweep

-- Every 1000 new keys, the buckets that are full again and the pauses that
-- are over are forgotten (an account of scope "account" leaves no key
-- behind for ever).
local function added_key()
  added = added + 1
  if added < 1000 then return end
  added = 0
  local t = now()
  for k, v in pairs(tats) do if v <= t then tats[k] = nil end end
  for k, v in pairs(pauses) do if v <= t then pauses[k] = nil end end
end

--- The in-process bucket: reserves the first slot at or after `at` for
-- `key` and returns the seconds from `at` until it; reserves nothing when
-- that is more than `limit`. (The same contract as a store's rate_take.)
-- @param key the bucket's key
-- @tparam number per_second the rate
-- @tparam number burst the burst
-- @tparam number at the time asked for (connkit.core.now() seconds)
-- @tparam[opt] number limit the longest wait that reserves
-- @treturn number the seconds to wait
function M.take(key, per_second, burst, at, limit)
  local interval = 1 / per_second
  local tat = tats[key]
  if tat == nil then added_key() end
  if tat == nil or tat < at then tat = at end
  local wait = max(0, tat - (burst - 1) * interval - at)
  if limit and wait > limit then return wait end
  tats[key] = tat + interval
  return wait
end

--- Forgets every in-process bucket and pause (for tests).
function M.reset()
  tats, pauses, added = {}, {}, 0
end

local function scope_key(rule, acct)
  local key = "ratelimit:" .. acct.integration.key
  if rule.scope == "account" then key = key .. ":" .. tostring(acct.id) end
  return key
end
M.scope_key = scope_key

local function fail(req, at, why)
  return require("connkit.http.request").fail(req, "rate_limited",
    ("rate limited: the next request may go in %s s (%s); not sent"):format(
      format_number(floor((at - now()) * 1000 + 0.5) / 1000), why), { retry_at = at })
end

--- The gate before a transfer of `req` (whose rule is req._rate): the
-- seconds to wait before sending (0: now; the bucket's slot is reserved),
-- or nil and the "rate_limited" error (nothing reserved, nothing to send).
-- `deadline` is the request's (core.now seconds).
-- @tparam connkit.http.request.Request req the request
-- @tparam number deadline the end of the request (connkit.core.now() seconds)
-- @treturn[1] number the seconds to wait
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "rate_limited")
function M.gate(req, deadline)
  local rule = rawget(req, "_rate")
  if not rule then return 0 end
  local acct = rawget(req, "_account")
  local key = scope_key(rule, acct)
  local t = now()
  local limit = rule.max_wait
  if deadline and deadline - t < limit then limit = max(0, deadline - t) end
  local wait = 0
  local pause = pauses[key]
  if pause then
    if pause <= t then
      pauses[key] = nil
    else
      wait = pause - t
      if wait > limit then
        return fail(req, pause, wait > rule.max_wait and ("the server's limit resets then, beyond max_wait "
          .. format_number(rule.max_wait) .. " s") or "after the request's timeout")
      end
    end
  end
  if rule.per_second then
    local store = acct.store
    local take = store and store.rate_take
    local b, err
    if take then
      b, err = take(key, rule.per_second, rule.burst, t + wait, limit - wait)
      if b == nil then return nil, err end
      if type(b) ~= "number" or b ~= b or b < 0 then
        error(("store.rate_take must return seconds (a number, 0 or more) or nil, err; it returned %s")
          :format(type(b) == "number" and tostring(b) or ("a " .. type(b))), 0)
      end
    else
      b = M.take(key, rule.per_second, rule.burst, t + wait, limit - wait)
    end
    if b > limit - wait then
      return fail(req, t + wait + b, b + wait > rule.max_wait and ("per_second "
        .. format_number(rule.per_second) .. ", beyond max_wait " .. format_number(rule.max_wait) .. " s")
        or "after the request's timeout")
    end
    wait = wait + b
  end
  return wait
end

--- Reads a reply of `req`: `remaining` at 0 or less pauses the scope until
-- `reset` (per reset_is). A reply without a usable reset sets no pause.
-- @tparam connkit.http.request.Request req the request
-- @tparam connkit.http.response.Response res the reply
function M.observe(req, res)
  local rule = rawget(req, "_rate")
  if not (rule and rule.remaining and rule.reset and res) then return end
  local headers = res.headers
  local left = headers[rule.remaining]
  left = left and tonumber(left:match("^%s*(%-?[%d.]+)"))
  if not left or left > 0 then return end
  local v = headers[rule.reset]
  if not v then return end
  local t, at = now(), nil
  if rule.reset_is == "http-date" then
    local s = retry.retry_after(v, t)
    at = s and t + s
  else
    local n = tonumber(v:match("^%s*([%d.]+)%s*$") or "")
    if n then at = rule.reset_is == "epoch" and n or t + n end
  end
  if not at or at <= t then return end
  local key = scope_key(rule, rawget(req, "_account"))
  local old = pauses[key]
  if not old then added_key() end
  if not old or old < at then pauses[key] = at end
end

return M
