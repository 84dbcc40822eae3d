--- Retry rules: which replies and failures are tried again, and after how
-- long. Exponential backoff with jitter, or the server's Retry-After (seconds
-- or an HTTP date) when it is within max_wait. Only idempotent methods are
-- retried unless the rules name others.
-- @module connkit.http.retry
local check = require "connkit.check"

local M = {}

local IDEMPOTENT = { GET = true, HEAD = true, OPTIONS = true, PUT = true, DELETE = true, TRACE = true }

-- failures with no reply worth another attempt: the request did not get
-- through (a timeout may have, so it is not retried)
local RETRY_CODES = { connect = true, network = true, dns = true }

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- days since 1970-01-01 of a civil date (proleptic Gregorian)
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- Seconds to wait from a Retry-After value, or nil when there is none.
-- @param v the header's value
-- @tparam number now the time now (epoch seconds)
-- @treturn number|nil the seconds
function M.retry_after(v, now)
  if type(v) ~= "string" then return nil end
  local secs = v:match("^%s*(%d+)%s*$")
  if secs then return tonumber(secs) end
  local d, mon, y, hh, mm, ss = v:match("^%s*%a+,%s*(%d+)%s+(%a+)%s+(%d+)%s+(%d+):(%d+):(%d+)%s*GMT")
  if not d or not MONTHS[mon] then return nil end
  local at = days_from_civil(tonumber(y), MONTHS[mon], tonumber(d)) * 86400 + hh * 3600 + mm * 60 + ss
  return math.max(0, at - (now or os.time()))
end

--- The rules for a request: its own `retry` option over the integration's
-- (false: none). Raises, naming the field, for a bad option.
-- @tparam connkit.account.Account acct the account
-- @param opt the request's retry option (nil, false or a table)
-- @treturn table|nil the rules
-- @raise naming the field
function M.rules(acct, opt)
  local integ = acct.integration
  if opt == false then return nil end
  if opt == nil then return integ.retry end
  if type(opt) ~= "table" then error("request: retry must be a table or false", 4) end
  local merged = {}
  for k, v in pairs(integ.def.retry or {}) do merged[k] = v end
  for k, v in pairs(opt) do merged[k] = v end
  return require("connkit.integration").check_retry(check.context("request"), merged, "retry")
end

--- Seconds to wait before attempt number `attempt + 1`, or nil for no retry.
-- `res` is the reply of the last attempt, or nil and `err` its failure.
-- @tparam table rules the retry rules
-- @tparam string method the HTTP method
-- @param res the last reply, or nil
-- @param err the last failure, when there is no reply
-- @tparam integer attempt the number of the last attempt
-- @treturn number|nil the seconds to wait, or nil
function M.delay(rules, method, res, err, attempt)
  if attempt > rules.max then return nil end
  local allowed
  if rules.methods then allowed = rules.methods[method] else allowed = IDEMPOTENT[method] end
  if not allowed then return nil end
  if res then
    if not rules.statuses[res.status] then return nil end
    local ra = M.retry_after(res.headers["retry-after"])
    if ra then
      if ra > rules.max_wait then return nil end -- longer than we may wait: give the reply back
      return ra
    end
  elseif not (err and RETRY_CODES[err.code]) then
    return nil
  end
  local d = rules.base * 2 ^ (attempt - 1)
  d = d / 2 + math.random() * d / 2
  return math.min(d, rules.max_wait)
end

return M
