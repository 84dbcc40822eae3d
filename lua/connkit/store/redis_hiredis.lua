--- The Redis wire client outside OpenResty: hiredis (csrc/redis.c), one
-- blocking connection per store object, made on first use and made again
-- after any failure. The Redis store (connkit.store.redis) talks to its
-- client only through this interface, so a cosocket client (resty.redis)
-- can be slotted in:
--
--   client = new(cfg)          cfg: host, port | socket, username, password,
--                              db, timeout (seconds), addr (for messages)
--   client:command(word, ...)  -> reply | nil, err
--   client:eval(script, keys, args) -> reply | nil, err
--                              (script: its source; EVALSHA, loading the
--                              script on first use and after NOSCRIPT)
--   client:close()
--
-- Replies: strings, integers, false for a nil reply, arrays of those. err
-- is a connkit error with code "store", the address named, no argument of
-- the command shown; err.redis_error is true for an error reply (the
-- connection stays up), else the connection was dropped.
-- @module connkit.store.redis_hiredis
local core = require "connkit.core"
local errors = require "connkit.errors"

local M = {}

local Client = {}
Client.__index = Client


local function fail(self, code, message, extra)
  extra = extra or {}
  extra.cause = code
  return nil, errors.new("store", "connkit.store.redis: " .. message, extra)
end

-- A connection, authenticated and on its database; nil, err on failure.
function Client:_connect()
  local cfg = self.cfg
  local conn, code, msg
  if cfg.socket then
    conn, code, msg = core.redis_connect_unix(cfg.socket, cfg.timeout)
  else
    conn, code, msg = core.redis_connect(cfg.host, cfg.port, cfg.timeout)
  end
  if not conn then return fail(self, code, msg) end
  if cfg.password then
    local ok, acode, amsg
    if cfg.username then
      ok, acode, amsg = conn:command("AUTH", cfg.username, cfg.password)
    else
      ok, acode, amsg = conn:command("AUTH", cfg.password)
    end
    if not ok then conn:close() return fail(self, acode, amsg .. " (AUTH)") end
  end
  if cfg.db and cfg.db ~= 0 then
    local ok, scode, smsg = conn:command("SELECT", cfg.db)
    if not ok then conn:close() return fail(self, scode, smsg .. " (SELECT)") end
  end
  self.conn = conn
  return conn
end

--- Sends one command: the reply, or nil and an error (see the module).
-- @param ... the command's words (strings or numbers)
-- @return[1] the reply
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "store")
function Client:command(...)
  local conn = self.conn
  if not (conn and conn:usable()) then
    local err
    conn, err = self:_connect()
    if not conn then return nil, err end
  end
  local reply, code, msg = conn:command(...)
  if reply == nil then
    if code == "redis_error" then return fail(self, code, msg, { redis_error = true }) end
    conn:close()
    self.conn = nil
    return fail(self, code, msg)
  end
  return reply
end

--- Runs a server-side script by its SHA1 (loaded when missing; see
-- connkit.store.redis_scripts.evalsha).
Client.eval = require("connkit.store.redis_scripts").evalsha

--- Closes the connection (the next command connects again).
function Client:close()
  if self.conn then self.conn:close() end
  self.conn = nil
end

--- A client for `cfg` (see the module); it connects on first use.
-- @tparam table cfg host, port, socket, db, username, password, timeout (checked by connkit.store.redis)
-- @treturn table the client
function M.new(cfg)
  return setmetatable({ cfg = cfg, shas = {} }, Client)
end

return M
