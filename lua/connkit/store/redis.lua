--- Redis token store: accounts shared by many processes and hosts, with an
-- owned, expiring, fenced lock. See README "Redis store".
--
-- Per account, two keys in one hash slot (the `{tag}` is the id, or
-- "sha256:<hex>" of an id holding a brace), both under `prefix`:
--
--   <prefix>{<tag>}:record  hash: v (version, only grows), data (the
--                           record: "CKR1" .. AES-256-GCM envelope, or JSON
--                           with plaintext = true), inflight (see below)
--   <prefix>{<tag>}:lock    the owner (32 hex digits, random) while held,
--                           with a TTL of lock_ttl
--
-- A sealed record binds the account id and its version as associated data:
-- a record copied to another account, or an older version put back, does not
-- open. The wire client sits behind a small interface (see
-- connkit.store.redis_hiredis): hiredis, or resty.redis over cosockets
-- (connkit.store.redis_resty) inside nginx where cosockets work, chosen
-- per call; the scripts are in connkit.store.redis_scripts.
-- @module connkit.store.redis
local core = require "connkit.core"
local cjson = require "cjson"
local errors = require "connkit.errors"
local common = require "connkit.store.common"
local envelope = require "connkit.store.envelope"
local check = require "connkit.check"
local scripts = require "connkit.store.redis_scripts"
local encode_json = require("connkit.json").encode
local raise = check.raise

local M = {}

local WHO = "connkit.store.redis"
local MAGIC = "CKR1"
local DEFAULTS = { prefix = "connkit:", lock_ttl = 30, lock_timeout = 60, timeout = 2, port = 6379, db = 0 }
local OPTIONS = {
  url = "nonempty", host = "nonempty", port = "port", db = "any", password = "nonempty",
  username = "nonempty", socket = "nonempty", prefix = "string", key = "any", key_file = "any",
  plaintext = "boolean", lock_ttl = "timeout", lock_timeout = "wait", timeout = "timeout",
  client = "any",
}
-- a put outside the lock retries its compare-and-set this many times
local PUT_TRIES = 5

local function db_number(v, what)
  local n = tonumber(v)
  if not n or n % 1 ~= 0 or n < 0 or n > 2 ^ 31 then
    raise(("%s: %s must be a whole number (a Redis database index)"):format(WHO, what))
  end
  return math.floor(n)
end

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- host, port, db, username, password from a redis:// URL; raises naming
-- the option, never showing the URL (it may hold the password).
local function parse_url(url)
  local shape = "option 'url' must look like redis://[[user]:password@]host[:port][/db]"
  local rest = url:match("^redis://(.*)$")
  if not rest then raise(WHO .. ": " .. shape .. " (only the redis scheme is spoken: no TLS)") end
  local out = {}
  local userinfo, hostpart = rest:match("^(.*)@([^@]*)$")
  if userinfo then
    local user, pass = userinfo:match("^([^:]*):(.*)$")
    if not user then raise(WHO .. ": " .. shape .. " (the password follows a ':')") end
    if user ~= "" then out.username = unescape(user) end
    if pass == "" then raise(WHO .. ": option 'url' has an empty password") end
    out.password = unescape(pass)
  else
    hostpart = rest
  end
  local hostport, db = hostpart:match("^([^/]*)/?(.*)$")
  local host, port = hostport:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = hostport:match("^([^:]*):?(%d*)$") end
  if not host or host == "" then raise(WHO .. ": " .. shape .. " (no host)") end
  if not port then raise(WHO .. ": " .. shape .. " (bad port)") end
  out.host = host
  if port ~= "" then
    out.port = tonumber(port)
    if out.port < 1 or out.port > 65535 then raise(WHO .. ": option 'url' has a port outside 1-65535") end
  end
  if db ~= "" then out.db = db_number(db, "the database in option 'url'") end
  return out
end

-- The connection settings from the options; raises naming the option.
local function connection(opts)
  local cfg = {}
  if opts.url ~= nil then
    for _, name in ipairs({ "host", "port", "db", "password", "username", "socket" }) do
      if opts[name] ~= nil then
        raise(("%s: give option 'url' or option '%s', not both"):format(WHO, name))
      end
    end
    cfg = parse_url(opts.url)
  else
    if opts.socket ~= nil and (opts.host ~= nil or opts.port ~= nil) then
      raise(WHO .. ": give option 'socket' or options 'host'/'port', not both")
    end
    cfg.host, cfg.port, cfg.socket = opts.host, opts.port, opts.socket
    cfg.username, cfg.password = opts.username, opts.password
    if opts.db ~= nil then cfg.db = db_number(opts.db, "option 'db'") end
    if opts.username ~= nil and opts.password == nil then
      raise(WHO .. ": option 'username' needs option 'password'")
    end
  end
  if not cfg.socket then
    cfg.host = cfg.host or "127.0.0.1"
    cfg.port = cfg.port or DEFAULTS.port
  end
  cfg.db = cfg.db or DEFAULTS.db
  cfg.addr = cfg.socket and ("unix:" .. cfg.socket) or
    ((cfg.host:find(":", 1, true) and ("[" .. cfg.host .. "]") or cfg.host) .. ":" .. cfg.port)
  return cfg
end

-- The hash tag of an id: the id itself, or a digest for an id that holds a
-- brace (it would end the tag early).
local function tag(id)
  if not id:find("[{}]") then return id end
  return "sha256:" .. core.hex(core.sha256(id))
end

-- Inside nginx (ngx.get_phase exists there only): whether cosockets work
-- in this phase, so the resty.redis client is used and the lock's wait
-- yields with ngx.sleep.
local ngx_host = type(rawget(_G, "ngx")) == "table" and type(ngx.get_phase) == "function"
local function cosockets()
  return ngx_host and require("connkit.transport.ngx").available() == true
end
local function ngx_sleep(s) require("connkit.transport.ngx").sleep(s) end

local method = common.method
local function check_id(id, fname) common.check_id(WHO, id, fname) end

--- A store on a Redis server (see README "Redis store").
-- @tparam table opts url (or host, port, db, username, password, socket),
--   prefix, key or key_file (or plaintext = true), lock_ttl, lock_timeout,
--   timeout; all checked, errors name the option
-- @treturn table the store: get(id), put(id, record), lock(id, max_wait)
--   -> unlock, held (see connkit.store.common), close()
function M.new(opts)
  opts = check.options(WHO, opts, OPTIONS)
  local cfg = connection(opts)
  local key = envelope.load_key(WHO, opts, false)
  if key and opts.plaintext then
    raise(WHO .. ": option 'plaintext' = true and a key: give one or the other")
  end
  if not key and not opts.plaintext then
    raise(WHO .. ": option 'key' (base64 of 32 bytes) or 'key_file' is required "
      .. "(or plaintext = true to store tokens unencrypted on purpose)")
  end
  local prefix = opts.prefix or DEFAULTS.prefix
  if prefix:find("[{}]") then raise(WHO .. ": option 'prefix' must not hold '{' or '}' (they make the hash tag)") end
  local lock_ttl = opts.lock_ttl or DEFAULTS.lock_ttl
  local lock_timeout = opts.lock_timeout or DEFAULTS.lock_timeout
  cfg.timeout = opts.timeout or DEFAULTS.timeout
  -- The wire client and the lock's sleep, chosen per call: resty.redis
  -- over cosockets inside nginx where cosockets work (a command yields to
  -- nginx), hiredis elsewhere (init_by_lua, outside nginx).
  local client
  local wire
  if opts.client ~= nil then
    -- another wire client: a function(cfg) -> client with command/eval/close
    if type(opts.client) ~= "function" then raise(WHO .. ": option 'client' must be a function(cfg) -> client") end
    client = opts.client(cfg)
    wire = function() return client, cosockets() and ngx_sleep or core.sleep end
  else
    local hiredis, resty
    wire = function()
      if cosockets() then
        resty = resty or require("connkit.store.redis_resty").new(cfg)
        return resty, ngx_sleep
      end
      hiredis = hiredis or require("connkit.store.redis_hiredis").new(cfg)
      return hiredis, core.sleep
    end
    client = {
      command = function(_, ...) local c = wire() return c:command(...) end,
      eval = function(_, ...) local c = wire() return c:eval(...) end,
      close = function()
        if hiredis then hiredis:close() end
        if resty then resty:close() end
      end,
    }
  end

  local store = { addr = cfg.addr, prefix = prefix }
  local function keys_of(id)
    local base = prefix .. "{" .. tag(id) .. "}"
    return base .. ":record", base .. ":lock"
  end
  local function aad(id, version) return MAGIC .. "\0" .. id .. "\0" .. tostring(version) end

  -- record text for version `version`
  local function encode(id, record, version)
    if record == nil then return "" end
    local copy = common.copy_record(record, WHO .. ": put")
    local json, jerr = encode_json(copy)
    if not json then raise(WHO .. ": put: the record cannot be stored: " .. jerr) end
    if not key then return json end
    return MAGIC .. core.seal(key, json, aad(id, version))
  end

  local function decode(id, data, version)
    local plain = data
    if data:sub(1, #MAGIC) == MAGIC then
      if not key then
        return nil, errors.new("store_auth", ("%s: the record of account %q is sealed, and this store "
          .. "has no key (plaintext = true)"):format(WHO, id))
      end
      plain = core.open(key, data:sub(#MAGIC + 1), aad(id, version))
      if not plain then
        return nil, errors.new("store_auth", ("%s: the record of account %q (version %s) does not "
          .. "authenticate (wrong key, changed or moved record, or an older version put back)"):format(WHO, id, version))
      end
    elseif key then
      return nil, errors.new("store_auth", ("%s: the record of account %q is not sealed, and this store "
        .. "has a key: refused"):format(WHO, id))
    end
    local okd, rec = pcall(cjson.decode, plain)
    if not okd or type(rec) ~= "table" then
      return nil, errors.new("store_corrupt", ("%s: the record of account %q is not a JSON object"):format(WHO, id))
    end
    return check.from_json(rec, cjson.null)
  end

  -- record (or false when there is none), version, inflight owner | nil, err
  local function read(id)
    local rkey = keys_of(id)
    local reply, err = client:command("HMGET", rkey, "v", "data", "inflight")
    if not reply then return nil, err end
    local version = tonumber(reply[1]) or 0
    if not reply[2] then return false, version, reply[3] or nil end
    local rec, derr = decode(id, reply[2], version)
    if not rec then return nil, derr end
    return rec, version, reply[3] or nil
  end

  local function script_refusal(word)
    if word == "lock_lost" then
      return errors.new("lock_lost", WHO .. ": the lock was lost (its lease ran out and another holder "
        .. "took it): nothing written, the newer record is kept")
    end
    return errors.new("lock_lost", WHO .. ": the record changed since it was read under the lock: "
      .. "nothing written, the newer record is kept")
  end

  store.get = method(store, function(id)
    check_id(id, "get")
    local rec, err = read(id)
    if rec == nil then return nil, err end
    return rec or nil
  end)

  store.put = method(store, function(id, record)
    check_id(id, "put")
    local rkey = keys_of(id)
    for _ = 1, PUT_TRIES do
      local reply, err = client:command("HGET", rkey, "v")
      if reply == nil then return nil, err end
      local version = tonumber(reply) or 0
      local res, eerr = client:eval(scripts.put, { rkey }, { version, encode(id, record, version + 1) })
      if res == nil then return nil, eerr end
      if res ~= "version" then return true end
    end
    return nil, errors.new("store", ("%s: put: the record of account %q kept changing under the write"):format(WHO, id))
  end)

  -- Lock SETs whose reply never came (timeout, connection lost): the
  -- server may have taken them, which would keep every holder out for
  -- lock_ttl; they are released (compare-and-delete) before the next lock.
  local maybe_held = {}
  local function release_orphans()
    for lkey, owner in pairs(maybe_held) do
      if client:eval(scripts.unlock, { lkey }, { owner }) == nil then return end
      maybe_held[lkey] = nil
    end
  end

  --- lock(id, max_wait) -> unlock, held (see connkit.store.common)
  store.lock = method(store, function(id, max_wait)
    check_id(id, "lock")
    release_orphans()
    local wait = lock_timeout
    if type(max_wait) == "number" and max_wait <= lock_timeout then wait = max_wait end
    local rkey, lkey = keys_of(id)
    local owner = core.hex(core.random(16))
    local deadline = core.now() + wait
    local pause = 0.005
    while true do
      local reply, err = client:command("SET", lkey, owner, "NX", "PX", math.ceil(lock_ttl * 1000))
      if reply == nil then
        if not err.redis_error then maybe_held[lkey] = owner end
        return nil, err
      end
      if reply then break end
      local left = deadline - core.now()
      if left <= 0 then
        return nil, errors.new("lock_timeout", ("%s: timed out after %.3gs waiting for the lock of account %q"):format(
          WHO, wait, id))
      end
      local _, sleep = wire()
      sleep(math.min(pause, left))
      pause = math.min(pause * 2, 0.1)
    end
    local version = 0
    local held = {}
    function held.get()
      local rec, v, inflight = read(id)
      if rec == nil then return nil, v end
      version = v
      held.inflight = inflight
      held.version = v
      return rec or nil
    end
    function held.begin()
      local res, err = client:eval(scripts.mark, { rkey, lkey }, { owner, version, math.ceil(lock_ttl * 1000) })
      if res == nil then return nil, err end
      if res ~= 1 then return nil, script_refusal(res) end
      return true
    end
    function held.put(record)
      local res, err = client:eval(scripts.commit, { rkey, lkey }, { owner, version, encode(id, record, version + 1) })
      if res == nil then return nil, err end
      if type(res) ~= "number" then return nil, script_refusal(res) end
      version = res
      held.version = res
      return true
    end
    local released = false
    local function unlock()
      if released then return true end
      released = true
      local res, err = client:eval(scripts.unlock, { lkey }, { owner })
      if res == nil then
        if not err.redis_error then maybe_held[lkey] = owner end
        return nil, err
      end
      return true
    end
    return unlock, held
  end)

  --- rate_take(scope_key, per_second, burst, at, limit) -> seconds to wait
  -- (the bucket shared by every process and host on this server; see
  -- connkit.http.rate_limit and scripts.rate_take)
  store.rate_take = method(store, function(scope_key, per_second, burst, at, limit)
    check_id(scope_key, "rate_take")
    local bkey = prefix .. "{" .. tag(scope_key) .. "}:rate"
    local ahead = math.max(0, at - core.now())
    local reply, err = client:eval(scripts.rate_take, { bkey },
      { ("%.6f"):format(per_second), tostring(burst), ("%.6f"):format(ahead), ("%.6f"):format(limit) })
    if reply == nil then return nil, err end
    return tonumber(reply) or 0
  end)

  --- Closes the connection (the next call opens another).
  store.close = method(store, function() client:close() return true end)

  return setmetatable(store, {
    __tostring = function() return WHO .. "(" .. cfg.addr .. ")" end,
  })
end

return M
