--- The Redis wire client inside OpenResty: resty.redis over cosockets
-- (Debian's lua-nginx-redis installs it as `nginx.redis`), so a command
-- yields to nginx instead of blocking the worker. Same interface, replies
-- and errors as connkit.store.redis_hiredis (see there):
--
--   client = new(cfg)                 cfg: host, port | socket, username,
--                                     password, db, timeout, addr
--   client:command(word, ...)         -> reply | nil, err
--   client:eval(script, keys, args)   -> reply | nil, err (EVALSHA, loaded
--                                     on first use and after NOSCRIPT)
--   client:close()
--
-- Every command takes a connection from the worker's cosocket pool (or
-- opens one: AUTH and SELECT on a new one only) and puts it back with
-- set_keepalive once the reply is read: no connection is held between
-- calls, since a cosocket cannot outlive the request that made it. The
-- pool's name holds the address, the database and a digest of the
-- credentials, so stores with other credentials or databases never share
-- a connection. A connection that failed (timeout, reset) is closed, not
-- pooled.
-- @module connkit.store.redis_resty
local core = require "connkit.core"
local errors = require "connkit.errors"

local M = {}

local Client = {}
Client.__index = Client

local KEEPALIVE_MS = 60000 -- how long an idle pooled connection is kept

local redis_module
local function resty_redis()
  if redis_module then return redis_module end
  for _, name in ipairs({ "nginx.redis", "resty.redis" }) do
    local ok, m = pcall(require, name)
    if ok and type(m) == "table" then
      redis_module = m
      return m
    end
  end
  error("connkit.store.redis: inside OpenResty the Redis store needs resty.redis "
    .. "(Debian: apt-get install lua-nginx-redis)", 0)
end

local function fail(cause, message, extra)
  extra = extra or {}
  extra.cause = cause
  return nil, errors.new("store", "connkit.store.redis: " .. message, extra)
end

-- ngx.null (nil replies) becomes false, as the hiredis client gives it; an
-- error inside an array ({ false, message } from resty.redis) is returned
-- as the second value.
local function convert(reply)
  if reply == ngx.null then return false end
  if type(reply) ~= "table" then return reply end
  local out = {}
  for i = 1, #reply do
    local v = reply[i]
    if type(v) == "table" and v[1] == false and type(v[2]) == "string" and #v == 2 then
      return nil, v[2]
    end
    local c, nested = convert(v)
    if c == nil then return nil, nested end
    out[i] = c
  end
  return out
end

-- the cause code of a cosocket error, as the hiredis client names them
local function cause_of(err)
  if err == "timeout" then return "timeout" end
  if err == "closed" then return "closed" end
  return "io"
end

local function io_message(self, err)
  if err == "timeout" then return ("redis %s: no reply within the timeout"):format(self.cfg.addr) end
  if err == "closed" then return ("redis %s: Server closed the connection"):format(self.cfg.addr) end
  return ("redis %s: %s"):format(self.cfg.addr, tostring(err))
end

-- Sends one command on `red`: reply | nil, err, dropped (true when the
-- connection must not be reused).
local function send(self, red, word, ...)
  local reply, err = red[word](red, ...)
  if reply == nil then
    red:close()
    return nil, select(2, fail(cause_of(err), io_message(self, err))), true
  end
  if reply == false then
    return nil, select(2, fail("redis_error", ("redis %s: %s"):format(self.cfg.addr, tostring(err)),
      { redis_error = true }))
  end
  local converted, nested = convert(reply)
  if converted == nil then
    return nil, select(2, fail("redis_error", ("redis %s: %s"):format(self.cfg.addr, nested), { redis_error = true }))
  end
  return converted
end

-- A connection from the pool, or a new one authenticated and on its
-- database; nil, err on failure.
function Client:_connect()
  local cfg = self.cfg
  local red, nerr = resty_redis():new()
  if not red then return fail("io", ("redis %s: cannot make a cosocket: %s"):format(cfg.addr, tostring(nerr))) end
  local ms = math.max(1, math.floor(cfg.timeout * 1000 + 0.5))
  -- (rawget: resty.redis makes a method for any other name, as a command)
  local set_timeouts = rawget(resty_redis(), "set_timeouts")
  if set_timeouts then set_timeouts(red, ms, ms, ms) else red:set_timeout(ms) end
  local ok, err
  if cfg.socket then
    ok, err = red:connect("unix:" .. cfg.socket, { pool = self.pool })
  else
    ok, err = red:connect(cfg.host, cfg.port, { pool = self.pool })
  end
  if not ok then
    local cause = err == "timeout" and "timeout" or (tostring(err):find("refused", 1, true) and "connect") or "io"
    return fail(cause, ("redis %s: cannot connect: %s"):format(cfg.addr, tostring(err)))
  end
  if (red:get_reused_times() or 0) > 0 then return red end
  if cfg.password then
    local reply, aerr
    if cfg.username then
      reply, aerr = send(self, red, "AUTH", cfg.username, cfg.password)
    else
      reply, aerr = send(self, red, "AUTH", cfg.password)
    end
    if reply == nil then
      red:close()
      aerr.message = aerr.message .. " (AUTH)"
      return nil, aerr
    end
  end
  if cfg.db and cfg.db ~= 0 then
    local reply, serr = send(self, red, "SELECT", cfg.db)
    if reply == nil then
      red:close()
      serr.message = serr.message .. " (SELECT)"
      return nil, serr
    end
  end
  return red
end

--- Sends one command: the reply, or nil and an error (see the module).
-- @tparam string word the command's name
-- @param ... its arguments
-- @return[1] the reply
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "store")
function Client:command(word, ...)
  local red, err = self:_connect()
  if not red then return nil, err end
  local reply, cerr, dropped = send(self, red, word, ...)
  if not dropped then
    -- back to the worker's pool; a connection that cannot go back is closed
    local ok = red:set_keepalive(KEEPALIVE_MS)
    if not ok then red:close() end
  end
  return reply, cerr
end

--- Runs a server-side script by its SHA1 (loaded when missing; see
-- connkit.store.redis_scripts.evalsha).
Client.eval = require("connkit.store.redis_scripts").evalsha

--- Nothing to close: connections go back to the worker's pool after each
-- command.
function Client:close() end

--- A client for `cfg` (see the module); it connects at each command.
-- @tparam table cfg host, port, socket, db, username, password, timeout (checked by connkit.store.redis)
-- @treturn table the client
function M.new(cfg)
  local who = ""
  if cfg.password then
    who = core.hex(core.sha256((cfg.username or "") .. "\0" .. cfg.password)):sub(1, 16)
  end
  return setmetatable({
    cfg = cfg, shas = {},
    pool = ("connkit.redis:%s/%d/%s"):format(cfg.addr, cfg.db or 0, who),
  }, Client)
end

return M
