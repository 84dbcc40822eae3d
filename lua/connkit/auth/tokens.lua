--- Token renewal and the refresh rules, for every auth type that fetches a
-- token (oauth2, custom_token, jwt).
--
-- The state is a record { access_token, refresh_token, expires_at,
-- issued_at, scope, token_type } kept in the account's store under its id
-- (connkit.auth.token_state keeps it; its functions are here too).
-- A refresh is single-flight: in this Lua state an account has one renewal
-- in flight that every caller waits for (a task whose token request does
-- not block, see M.renewal); across processes the store's lock is taken, the
-- record read again (another process may have refreshed already), and only
-- a token that is still due is renewed; the new record is written to the
-- store before the token is used.
-- @module connkit.auth.tokens
local core = require "connkit.core"
local errors = require "connkit.errors"
local cosync = require "connkit.cosync"
local common = require "connkit.store.common"
local record_rules = require "connkit.auth.token_record"
local state = require "connkit.auth.token_state"

local M = {}

-- wall-clock seconds with a fraction: a 4 s token renewed "at half its life"
-- must not depend on where in a second it was fetched
local now = core.now

-- An account's store lock, called as API.md says (lock(id, max_wait)), its
-- failures made errors with code "store".
local store_lock = common.account_lock

-- A token record: when it is due, whether it can be used (connkit.auth.token_record).
M.due_at, M.check_record = record_rules.due_at, record_rules.check_record

-- The token state in memory and in the store (connkit.auth.token_state).
M.adopt, M.load, M.merge, M.store_error = state.adopt, state.load, state.merge, state.store_error
M.install, M.use_winner, M.drop, M.status = state.install, state.use_winner, state.drop, state.status
local adopt, adopt_stale = state.adopt, state.adopt_stale

-- Accounts that can get a token from their credentials alone (nothing in
-- the store is needed to renew): client credentials, custom tokens, JWTs
-- and the jwt_bearer grant.
local function refetchable(acct)
  local o = acct.integration.oauth2
  local auth = acct.integration.auth
  return auth == "custom_token" or auth == "jwt"
    or (o ~= nil and (o.grant_type == "client_credentials" or o.grant_type == "jwt_bearer"))
end

-- The part of a renewal done under the store's lock: read the record again
-- (another process may have renewed meanwhile), and fetch a token only when
-- one is still needed. A record that cannot be read is an error, except for
-- an account that needs nothing from it: that one fetches a token, keeps it
-- in memory, leaves the record as it is and says so in status().
local function locked_renew(acct, force, used)
  -- (through the store's fenced lock when it has one: see store/common.lua)
  local rec, gerr = common.locked_get(acct)
  local keep_store = false
  if gerr then
    if not refetchable(acct) then return nil, gerr end
    acct._store_err, rec, keep_store = gerr, nil, true
  else
    acct._store_err = nil
  end
  local current = acct._tok and acct._tok.access_token
  local stale = false
  if rec and rec.access_token ~= nil and rec.access_token ~= current then
    -- another process (or account object) renewed meanwhile: adopt it, or
    -- renew now if it cannot be used
    if adopt(acct, rec) then
      current = rec.access_token
    else
      adopt_stale(acct, rec)
      stale = true
    end
  end
  -- (a stale record is renewed whatever the state in memory says)
  if not stale then
    if used then
      if current and current ~= used then return true end -- already replaced
    elseif not force and acct._refresh_at and now() < acct._refresh_at then
      return true -- no longer due
    end
  end
  -- a fenced store marks the record "refresh in flight", refused when this
  -- holder's lease already ran out: then another holder renewed, use that
  local bok, berr = common.locked_begin(acct)
  if not bok then
    if berr.code == "lock_lost" and M.use_winner(acct) then return true end
    return nil, berr
  end
  local fresh, ferr = acct:_fetch_token()
  if not fresh then
    if ferr.oauth_error == "invalid_grant" and common.locked_inflight(acct) then
      return nil, common.lost_in_flight(acct, ferr)
    end
    return nil, ferr
  end
  return M.install(acct, M.merge(acct, fresh), keep_store)
end

-- Renewals in flight in this Lua state by store and id: two account objects
-- on one store record take turns (the first holds the store's lock while it
-- waits for its token reply, so the second must not ask for the lock yet).
local busy = setmetatable({}, { __mode = "k" })

-- Renewals that hold their store's lock (they wait for nothing but their
-- token reply).
local holding = {}

--- Seconds after which a renewal running in another OpenResty light thread
-- is taken for dead (see cosync's Task:stalled) and a new one is started.
M.STALLED = 300

--- Every renewal in flight (connkit.poll drives them even when no handle
-- waits for them any more).
M.active = {}

-- The body of a renewal task: wait for the turn, lock, renew, unlock.
-- `deadline`: that of the request that started it, which bounds the wait
-- for the store's lock (the token request itself has the account's timeout:
-- other callers may wait for it longer).
local function renew_body(acct, force, used, task, deadline)
  local ids = busy[acct.store]
  if not ids then ids = {}; busy[acct.store] = ids end
  local other = ids[acct.id]
  while other and other ~= task and not other:stalled(M.STALLED) do
    cosync.await(other)
    other = ids[acct.id]
  end
  ids[acct.id] = task
  local unlock, lerr = store_lock(acct, deadline)
  -- a lock this Lua state already holds (file store: "lock_busy") belongs
  -- to a renewal that waits for its token reply, e.g. of an account object
  -- on another store object over the same directory: wait for it, try again
  while not unlock and lerr.code == "lock_busy" do
    local holder = next(holding)
    if holder == nil then break end
    cosync.await(holder)
    unlock, lerr = store_lock(acct, deadline)
  end
  local ok, res, err
  if unlock then
    holding[task] = true
    ok, res, err = cosync.pcall(locked_renew, acct, force, used)
    holding[task] = nil
    unlock()
  else
    ok, res, err = true, nil, lerr
  end
  if ids[acct.id] == task then ids[acct.id] = nil end
  if not ok then error(res, 0) end
  if not unlock and deadline and lerr.code == "lock_timeout" and now() >= deadline - 0.01 then
    -- the request's time ran out, not the store's: no cooldown for others
    return nil, errors.new("timeout", "the request's timeout ran out waiting for the token store's lock")
  end
  if not res then
    acct._fail_at, acct._fail_err = now(), err
    require("connkit.hooks").refresh_failed(acct, err) -- (on_refresh_error; status().state)
    return nil, err
  end
  return true
end

--- The account's renewal: a task (connkit.cosync) whose result is true, or
-- nil and an error. An account has at most one renewal in flight: every
-- caller (blocking or not) that needs a token meanwhile gets that same one,
-- so there is one token request and no "refresh already under way". The
-- token request itself does not block: the task waits for it on the shared
-- engine, driven by whoever waits for the task (`task:result()` blocks,
-- `task:done()` never does). The store's lock is taken with the store's own
-- call (a file store's flock may block briefly) and held until the new
-- record is written. `used` is the access token a request was refused with
-- (401/403): if the state already holds another one, somebody renewed it
-- meanwhile and that one is used. `force` renews even when the token is not
-- due. `deadline` (optional) bounds the wait for the store's lock.
-- @tparam connkit.account.Account acct the account
-- @tparam boolean force renew even when the token is not due
-- @tparam[opt] string used the access token a request was refused with
-- @tparam[opt] number deadline when to stop waiting for the store's lock
--   (connkit.core.now() seconds)
-- @treturn table the task (connkit.cosync): done(), result()
function M.renewal(acct, force, used, deadline)
  local cur = acct._renewal
  if cur and cur:stalled(M.STALLED) then
    -- (OpenResty) suspended far longer than a fetch takes (its light thread
    -- killed inside nginx, a store that hangs): given up, a new one starts
    acct._renewal, M.active[cur], cur = nil, nil, nil
  end
  if cur then
    -- (running in another OpenResty light thread: that one is waited for)
    if not cur:running() or cur:elsewhere() then return cur end
    -- re-entered from inside it (on_token, a store callback): use what there is
    if acct._values.token then return cosync.finished(true) end
    return cosync.finished(nil, errors.new("refresh", "a token refresh is already under way"))
  end
  if acct._store_err and not refetchable(acct) then
    -- read the store again: the problem may be gone (key fixed, file restored)
    acct._store_err = nil
    M.load(acct)
    if acct._store_err then return cosync.finished(nil, acct._store_err) end
  end
  -- a failed refresh is not retried within the cooldown, except on request
  -- (refresh()): a refused request must not hammer a dead token endpoint
  if (not force or used) and acct._fail_at and now() - acct._fail_at < acct.integration.refresh.cooldown then
    return cosync.finished(nil, acct._fail_err)
  end
  local task
  task = cosync.task(function() return renew_body(acct, force, used, task, deadline) end)
  task.on_done = function()
    M.active[task] = nil
    if acct._renewal == task then acct._renewal = nil end
  end
  acct._renewal = task
  M.active[task] = true
  return task
end

--- Renews the token and waits for it (see M.renewal): true, or nil and an
-- error.
-- @tparam connkit.account.Account acct the account
-- @tparam boolean force renew even when the token is not due
-- @tparam[opt] string used the access token a request was refused with
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.renew(acct, force, used)
  return M.renewal(acct, force, used):result()
end

--- A copy of a renewal's error for one of the callers that shared it (each
-- sets its own `attempts` on it).
-- @param err the shared error
-- @return a copy (a connkit error), or err as it is
function M.own(err)
  if errors.is(err) then return errors.new(err.code, err.message, err) end
  return err
end

-- The outcome of making sure of a token: a failed renewal inside the window
-- still leaves the old token, good until it expires, so it is used (the
-- next call tries again after the cooldown).
local function ensured(acct, ok, err)
  if ok then return true end
  local rec = acct._tok
  if rec and rec.access_token and rec.expires_at and now() < rec.expires_at - 1 then return true end
  return nil, M.own(err)
end

--- After waiting for `task` (from M.ensure_start): true, or nil and an error.
-- @tparam connkit.account.Account acct the account
-- @tparam table task the renewal task
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.ensured(acct, task)
  return ensured(acct, task:result())
end

--- The hot path before every request: nothing to do while the token is
-- fresh; otherwise renew it (or fetch the first one) and wait.
-- @tparam connkit.account.Account acct the account
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.ensure(acct)
  local at = acct._refresh_at
  if at and now() < at then return true end
  return ensured(acct, M.renewal(acct, false, nil):result())
end

--- M.ensure without waiting: true, or nil and an error, or false and the
-- renewal task to wait for (then M.ensured(acct, task)). `deadline`: see
-- M.renewal.
-- @tparam connkit.account.Account acct the account
-- @tparam[opt] number deadline see M.renewal
-- @treturn[1] boolean true: the token is there
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
-- @treturn[3] boolean false
-- @treturn[3] table the renewal task to wait for
function M.ensure_start(acct, deadline)
  local at = acct._refresh_at
  if at and now() < at then return true end
  local task = M.renewal(acct, false, nil, deadline)
  if task:done() then return ensured(acct, task:result()) end
  return false, task
end

return M
