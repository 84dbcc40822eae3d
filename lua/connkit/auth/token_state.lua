--- The token state of an account: the record in use in memory, and the
-- store's copy of it. Reading it at creation, taking a new record (store
-- first, then memory, then on_token), dropping it, and what status() may
-- show of it. The renewal that produces new records: connkit.auth.tokens.
-- @module connkit.auth.token_state
local core = require "connkit.core"
local errors = require "connkit.errors"
local common = require "connkit.store.common"
local record_rules = require "connkit.auth.token_record"
local metadata = require "connkit.auth.token_metadata"

local M = {}

local now = core.now -- (wall-clock seconds with a fraction)

-- An account's store, called as API.md says (store.get(id), put(id, r)),
-- its failures made errors with code "store".
local store_get, store_put = common.account_get, common.account_put

local check_record, due_at = record_rules.check_record, record_rules.due_at

--- Makes `rec` the account's token state in memory (no store write).
-- Returns true, or nil and an error for a record that cannot be used (see
-- connkit.auth.token_record); the state is then left as it was.
local function adopt(acct, rec)
  if type(rec) ~= "table" or rec.access_token == nil then
    acct._tok = rec
    acct._refresh_at = nil
    return acct:_set_token(nil)
  end
  local cok, cerr = check_record(acct, rec)
  if not cok then return nil, cerr end
  local mok, merr = metadata.apply(acct, rec) -- (token_metadata: parameters from the reply)
  if not mok then return nil, merr end
  local ok, err = acct:_set_token(rec.access_token)
  if not ok then return nil, err end
  if rec.refresh_token then acct:_add_secret(rec.refresh_token) end
  acct._tok = rec
  acct._refresh_at = due_at(rec, acct.integration.refresh)
  return true
end
M.adopt = adopt

-- A stored record that cannot be used (an access token with CR/LF that an
-- older version stored, times that are not numbers) is stale, not a
-- permanent failure: its refresh token, if it has a usable one, replaces the
-- one in memory (it is the newer), the rest of the state in memory is kept,
-- and the token is renewed at the next use (the new record replaces it).
local function adopt_stale(acct, rec)
  local rt = rec.refresh_token
  local cur = acct._tok or {}
  if type(rt) ~= "string" or rt == "" then rt = cur.refresh_token end
  local keep = {}
  for k, v in pairs(cur) do keep[k] = v end
  keep.refresh_token = rt
  if keep.scope == nil and type(rec.scope) == "string" then keep.scope = rec.scope end
  if rt then acct:_add_secret(rt) end
  acct._tok = keep
  acct._refresh_at = nil
end
M.adopt_stale = adopt_stale

--- Loads the account's state from its store (at creation).
-- A record the store cannot give (wrong key, tampered file) is not
-- overwritten: an authorization-code account reports that error on every
-- token operation; a client-credentials or custom-token account fetches a
-- token of its own and shows the error in status().store_error.
-- @tparam connkit.account.Account acct the account
function M.load(acct)
  local rec, err = store_get(acct)
  if err then
    acct._store_err = err
  elseif rec and not adopt(acct, rec) then
    adopt_stale(acct, rec)
  end
end

--- A fresh record from a token endpoint reply: keeps the old refresh token
-- when the reply has none (RFC 6749 6), stamps issued_at.
-- @tparam connkit.account.Account acct the account
-- @tparam table fresh the record made from the reply
-- @treturn table the record to install
function M.merge(acct, fresh)
  local old = acct._tok or {}
  if fresh.refresh_token == nil then fresh.refresh_token = old.refresh_token end
  fresh.issued_at = fresh.issued_at or now()
  if fresh.scope == nil then fresh.scope = old.scope end
  metadata.merge(old, fresh)
  return fresh
end

--- The store error the account lives with, as { code, message } (no
-- secret), or nil: a record it could not read.
-- @tparam connkit.account.Account acct the account
-- @treturn table|nil { code, message }
function M.store_error(acct)
  local e = acct._store_err
  if e then return { code = e.code, message = e.message } end
end

-- Calls on_token with what may be shown: no secret.
local function notify(acct, rec)
  if not acct.on_token then return end
  acct.on_token(acct, {
    expires_at = rec.expires_at,
    expires_in = rec.expires_at and math.floor(rec.expires_at - now() + 0.5) or nil,
    scope = rec.scope, token_type = rec.token_type,
    has_refresh_token = rec.refresh_token ~= nil,
    store_error = M.store_error(acct),
  })
end

--- Writes a new record to the store, then makes it the one in use, then
-- tells on_token. The store write comes first so a rotated refresh token is
-- never lost; if the write fails the new token is still used here, and the
-- error is returned. `keep_store`: the store's record could not be read, so
-- it is left as it is (the token lives in memory only).
-- @tparam connkit.account.Account acct the account
-- @tparam table rec the new token record
-- @tparam[opt] boolean keep_store leave the store's record alone
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (the record refused, or the store's write)
function M.install(acct, rec, keep_store)
  -- checked before it is stored: a record that cannot be used must never
  -- replace a good one (nor stay in the store for the next process)
  local cok, cerr = check_record(acct, rec)
  if not cok then return nil, errors.new(cerr.code, "new token refused, nothing stored: " .. cerr.message) end
  local put_ok, put_err = true, nil
  if not keep_store then put_ok, put_err = common.locked_put(acct, rec) end
  if not put_ok and put_err.code == "lock_lost" and M.use_winner(acct) then
    -- the fence refused the commit (this holder's lease ran out): the
    -- record another holder wrote meanwhile is the one in use now
    acct._fail_at, acct._fail_err = nil, nil
    return true
  end
  local ok, err = adopt(acct, rec)
  if not ok then return nil, err end
  acct._fail_at, acct._fail_err = nil, nil
  notify(acct, rec)
  if not put_ok then return nil, put_err end
  return true
end

--- After a fenced store refused this holder ("lock_lost"): reads the record
-- the newer holder wrote and uses it. True when it could be used.
-- @tparam connkit.account.Account acct the account
-- @treturn boolean whether the newer record is in use
function M.use_winner(acct)
  local rec = store_get(acct)
  return rec ~= nil and rec.access_token ~= nil and adopt(acct, rec) == true
end

--- Drops the tokens here and in the store.
-- @tparam connkit.account.Account acct the account
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (the store's)
function M.drop(acct)
  acct._tok = nil
  acct._refresh_at = nil
  acct:_set_token(nil)
  if acct._dpop then require("connkit.auth.dpop").forget(acct) end -- (the key goes with the tokens)
  return store_put(acct, nil)
end

--- What can be shown about the state: no secrets.
-- @tparam connkit.account.Account acct the account
-- @treturn table auth, authorized, expires_in, scope, token_type,
--   has_refresh_token, store_error
function M.status(acct)
  local rec = acct._tok or {}
  return {
    auth = acct.integration.auth,
    authorized = rec.access_token ~= nil or rec.refresh_token ~= nil,
    expires_in = rec.expires_at and math.max(0, math.floor(rec.expires_at - now() + 0.5)) or nil,
    scope = rec.scope,
    token_type = rec.token_type,
    has_refresh_token = rec.refresh_token ~= nil,
    store_error = M.store_error(acct),
  }
end

return M
