--- One attempt of a prepared request and what follows it: the account's
-- token made ready first (fetched or refreshed, shared with every other
-- caller), the transfer, one refresh and one retry on refresh.on_status,
-- redirects when asked, then the retry rules; all within the request's
-- deadline. `Request:send()` is defined here; the non-blocking handles of
-- connkit.http.async take the same steps without waiting.
-- @module connkit.http.attempt
local core = require "connkit.core"
local retry = require "connkit.http.retry"
local redirect = require "connkit.http.redirect"
local request = require "connkit.http.request"
local refresh_rules = require "connkit.http.refresh_rules"
local rate_limit = require "connkit.http.rate_limit"

local transport = require "connkit.transport"
local hooks = require "connkit.hooks"

local REDIRECT = redirect.STATUS
local now = core.now
local perform = transport.curl.performer -- perform(spec): the curl engine's, bound
local finalize, fail = request.finalize, request.fail
local Request = request.Request

local M = {}

local tokens = require "connkit.auth.tokens"

local deadlines = require "connkit.http.deadline"
local out_of_time, spec_until, wait_task = deadlines.out_of_time, deadlines.spec_until, deadlines.wait_task

--- One transfer of the request within its deadline, over the transport of
-- the place it is sent from: the response, or nil, an error. `n`: the
-- attempt number the account's hooks are told.
local function perform_until(req, deadline, n, nonced)
  local t = transport.current()
  if rawget(req, "_rate") then
    -- the rate limit's wait (no lock is held here)
    local wait, rerr = rate_limit.gate(req, deadline)
    if not wait then return nil, rerr end
    if wait > 0 then t.sleep(wait) end
  end
  local w, err = spec_until(t, req, deadline)
  if not w then return nil, err end
  local acct = rawget(req, "_account")
  local call = acct._hooks and hooks.begin(acct, req, "api", n, t.name)
  local res, code, msg = t.perform(w)
  if not res then res, err = fail(req, code, msg)
  elseif rawget(req, "_rate") then rate_limit.observe(req, res) end
  if call then hooks.finish(call, res, err) end
  if res and rawget(req, "_dpop") and require("connkit.auth.dpop").observe(req.url, res) and not nonced then
    return perform_until(req, deadline, n, true) -- (RFC 9449 9: once more with the server's nonce)
  end
  return res, err
end

--- Whether this reply asks for one refresh and one retry: a token account
-- and a reply that refresh.on_status, on_body or when takes for a refused
-- token (connkit.http.refresh_rules). True or false, or nil and an error
-- when refresh.when raised.
-- @tparam connkit.http.request.Request req the request
-- @tparam connkit.http.response.Response res the reply
-- @treturn[1] boolean whether to refresh and retry
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "refresh_when")
function M.refused(req, res)
  local acct = rawget(req, "_account")
  -- (a request sent without the account's credentials (req._bare) was not
  -- refused for its token)
  if acct._ensure_token == nil or rawget(req, "_bare") then return false end
  return refresh_rules.refused(acct.integration.refresh, res, acct)
end

--- The end of a reply that is not refused: redirects when asked, every hop
-- within the deadline. (`n`: the attempt's number, for the hooks.)
-- @tparam connkit.http.request.Request req the request
-- @tparam connkit.http.response.Response res the reply
-- @tparam[opt] number deadline the end of the request (default: from its
--   timeout)
-- @tparam integer n the attempt's number
-- @treturn[1] connkit.http.response.Response the last hop's reply
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.follow(req, res, deadline, n)
  if rawget(req, "follow") and REDIRECT[res.status] then
    return redirect.follow(req, res, fail, deadline or deadlines.of(req), n)
  end
  return res
end

--- After `task` (a renewal of the request's account) is over: the request
-- brought up to date with the new token. Returns true, or nil and an error.
-- @tparam connkit.http.request.Request req the request
-- @tparam table task the renewal task
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.refreshed(req, task)
  local ok, err = task:result()
  if not ok then return nil, tokens.own(err) end
  return finalize(req, rawget(req, "_account"))
end

--- After a refused reply, without waiting: the account's renewal (the one
-- in flight, if any) is started. Returns true (the request is up to date:
-- send it again), nil and an error, or false and the task to wait for
-- (then M.refreshed(req, task)).
-- @tparam connkit.http.request.Request req the request
-- @tparam[opt] number deadline bounds the wait for the store's lock
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
-- @treturn[3] boolean false
-- @treturn[3] table the task
function M.refresh_start(req, deadline)
  local task = tokens.renewal(rawget(req, "_account"), true, rawget(req, "_token"), deadline)
  if not task:done() then return false, task end
  return M.refreshed(req, task)
end

--- What happens after a reply: on a status in refresh.on_status, one
-- refresh and one retry (token accounts); redirects when asked. Used by
-- send(). Returns the outcome and the number of extra attempts made (1
-- after a refresh and retry). `n`: the number of the attempt that replied.
-- @tparam connkit.http.request.Request req the request
-- @tparam connkit.http.response.Response res the reply
-- @tparam number deadline the end of the request (connkit.core.now() seconds)
-- @tparam integer n the attempt's number
-- @return the response (or nil, err) and the extra attempts made
function M.complete(req, res, deadline, n)
  local extra = 0
  local refused, rerr = M.refused(req, res)
  if refused == nil then return nil, rerr, 0 end
  if refused then
    local task = tokens.renewal(rawget(req, "_account"), true, rawget(req, "_token"), deadline)
    if not wait_task(task, deadline) then
      local _, terr = out_of_time(req, "the token was renewed")
      return nil, terr, 0
    end
    local ok, err = M.refreshed(req, task)
    if not ok then return nil, err, 0 end
    res, err = perform_until(req, deadline, (n or 1) + 1)
    if not res then return nil, err, 1 end
    extra = 1
  end
  local r, err = M.follow(req, res, deadline, (n or 1) + extra)
  return r, err, extra
end

--- The request brought up to date with the account's token once `task`
-- (from M.ready_start) is over. Returns true, or nil and an error.
-- @tparam connkit.http.request.Request req the request
-- @tparam table task the renewal task
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.ready_after(req, task)
  local acct = rawget(req, "_account")
  local ok, err = tokens.ensured(acct, task)
  if not ok then return nil, err end
  if rawget(req, "_src_lines") ~= acct._lines then return finalize(req, acct) end
  return true
end

--- Brings the request up to date with the account's token without waiting:
-- true, or nil and an error, or false and the renewal task that fetches the
-- token (then M.ready_after(req, task)). `deadline` bounds the wait for
-- the store's lock.
-- @tparam connkit.http.request.Request req the request
-- @tparam[opt] number deadline bounds the wait for the store's lock
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
-- @treturn[3] boolean false
-- @treturn[3] table the task
function M.ready_start(req, deadline)
  local acct = rawget(req, "_account")
  if acct._ensure_token and not rawget(req, "_bare") then
    local ok, x = tokens.ensure_start(acct, deadline)
    if ok == false then return false, x end
    if not ok then return nil, x end
  end
  if rawget(req, "_src_lines") ~= acct._lines then return finalize(req, acct) end
  return true
end

--- Brings the request up to date with the account's token (fetching or
-- refreshing it first when it is due, and waiting for that until the
-- deadline). Returns true, or nil and an error.
-- @tparam connkit.http.request.Request req the request
-- @tparam number deadline the end of the request (connkit.core.now() seconds)
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "timeout" when the token did not come in time)
function M.ready(req, deadline)
  local ok, x = M.ready_start(req, deadline)
  if ok == false then
    if not wait_task(x, deadline) then return out_of_time(req, "the token came") end
    return M.ready_after(req, x)
  end
  return ok, x
end

--- One attempt: the token brought up to date, the transfer, and what
-- follows a reply (refresh and retry on on_status, redirects), all within
-- the deadline. Returns the outcome and the number of extra attempts (see
-- M.complete). `n`: this attempt's number (counting each refresh and retry).
-- @tparam connkit.http.request.Request req the request
-- @tparam number deadline the end of the request (connkit.core.now() seconds)
-- @tparam integer n this attempt's number
-- @return the response (or nil, err) and the extra attempts made
function M.attempt(req, deadline, n)
  local ok, err = M.ready(req, deadline)
  if not ok then return nil, err, 0 end
  local res
  res, err = perform_until(req, deadline, n)
  if not res then return nil, err, 0 end
  if rawget(req, "_account")._ensure_token or rawget(req, "follow") then return M.complete(req, res, deadline, n) end
  return res, nil, 0
end

--- After attempt number `attempt` gave (res | nil, err) and `extra`
-- attempts beside the retry rules' (a refresh and retry): more attempts
-- while the retry rules ask for them and they fit before the deadline
-- (waiting in between), then the outcome with `attempts` set to every
-- attempt made.
-- @tparam connkit.http.request.Request req the request
-- @param res the response, or nil
-- @param err the error, when there is no response
-- @tparam integer attempt the number of the attempt that gave them
-- @tparam[opt=0] integer extra attempts besides the retry rules'
-- @tparam[opt] number deadline the end of the request (default: from its
--   timeout)
-- @treturn[1] connkit.http.response.Response the response, with `attempts`
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error, with `attempts`
function M.settle(req, res, err, attempt, extra, deadline)
  extra = extra or 0
  deadline = deadline or deadlines.of(req)
  while true do
    local wait = deadlines.retry_wait(req, res, err, attempt, deadline)
    if not wait then break end
    transport.current().sleep(wait)
    attempt = attempt + 1
    local x
    res, err, x = M.attempt(req, deadline, attempt + extra)
    extra = extra + x
  end
  M.count(res, err, attempt + extra)
  hooks.request_done(rawget(req, "_account"), req, res, err)
  return res, err
end

--- Sets `attempts` on an outcome. (A response says 1 through its
-- metatable: setting it would grow the table.)
-- @param res the response, or nil
-- @param err the error, when there is no response
-- @tparam integer n the number of attempts
function M.count(res, err, n)
  if res then
    if n ~= 1 then res.attempts = n end
  elseif err then
    err.attempts = n
  end
end

--- Sends the request and waits for the reply (`req:send()`): the token
-- fetched or renewed first when due, one refresh and retry on the refresh
-- rules' statuses, redirects with `follow`, the retry rules, all within the
-- request's timeout.
-- @treturn[1] connkit.http.response.Response the response (a non-2xx reply too)
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error when there is no reply to give
--   (both carry `attempts`)
function Request:send()
  local acct = self._account
  if self._plain and self._src_lines == acct._lines and transport.curl_only then
    -- the common case, kept short: static auth, nothing to follow or retry,
    -- over the curl transport
    local res, code, msg = perform(self._wire)
    if res then return res end -- (attempts = 1 comes from the metatable)
    local _, err = fail(self, code, msg)
    err.attempts = 1
    return nil, err
  end
  local deadline = now() + self.timeout
  local res, err, extra = M.attempt(self, deadline, 1)
  return M.settle(self, res, err, 1, extra, deadline)
end

M.send = Request.send
return M
