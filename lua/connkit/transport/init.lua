--- Transports: what moves a finished request's bytes. Everything above
-- (templates, auth, request parameters, refresh rules, retries, redirects,
-- stores, OAuth flows) is written once in connkit.http and connkit.auth;
-- a request is bound to a transport when it is sent, not when it is
-- prepared.
--
-- The transports: "curl" (connkit.transport.curl, the libcurl engine) and
-- "ngx" (connkit.transport.ngx, OpenResty cosockets). Inside nginx the ngx
-- transport is chosen wherever cosockets work; in init_by_lua and
-- init_worker_by_lua (no cosockets, and blocking there is harmless) the curl
-- transport is; in the other phases without cosockets (set_by_lua, header
-- and body filters, log_by_lua) a request raises an error naming the phase.
-- Elsewhere it is always curl. `connkit.use_transport(name)` overrides the
-- choice for the Lua state (the nginx worker).
--
-- Every transport is a table with:
--   name                    "curl" | "ngx"
--   available()             true, or false and why not (here and now)
--   of_request(req)         what perform/start take for a prepared request
--   of_table(t)             the same for a table of a request's fields
--                           (method, url, header_lines, body, timeout,
--                           connect_timeout, max_body, decompress, ca_file),
--                           or nil, code, message
--   perform(spec)           response | nil, code, message (waits)
--   start(spec)             a transfer: done(), result() -> like perform,
--                           cancel(); or nil, code, message
--   poll(timeout)           drives transfers, waits up to timeout s for one
--                           to finish; returns how many finished
--   pending()               transfers in flight
--   sleep(s)                waits without blocking the host where it can
--   spawn(f, ...)           (ngx) runs f(...) in a light thread: a job with
--                           done(), result() -> f's results (raises f's
--                           error), cancel(); any light thread may wait
--                           for it
-- Header lines are final: "Name: value"; "Name;" sends an empty value;
-- "Name:" leaves out a header the transport would add itself.
-- @module connkit.transport
local curl = require "connkit.transport.curl"
local raise = require("connkit.options").raise

local M = { curl = curl }

-- The transport use_transport() set, or nil: chosen per call.
local forced = nil

-- Inside nginx with the Lua module (ngx.get_phase exists there only).
local ngx_host = type(rawget(_G, "ngx")) == "table" and type(ngx.get_phase) == "function"

-- Phases in nginx where the curl transport is used (no cosockets there,
-- and blocking does no harm: no request is being served).
local CURL_PHASES = { init = true, init_worker = true }

local ngx_transport = nil
local function ngx_module()
  if not ngx_transport then ngx_transport = require "connkit.transport.ngx" end
  return ngx_transport
end

--- True when requests always go over the curl transport (not inside nginx,
-- nothing forced otherwise): the request path's short cut.
M.curl_only = not ngx_host

--- The transport a request made here and now would use, or nil and why
-- none can be used (an nginx phase without cosockets).
-- @treturn[1] table the transport module (connkit.transport.curl or .ngx)
-- @return[2] nil
-- @treturn[2] string why none can be used
function M.choose()
  if forced then
    if forced ~= curl then
      local ok, why = forced.available()
      if not ok then return nil, why end
    end
    return forced
  end
  if not ngx_host then return curl end
  local phase = ngx.get_phase()
  if CURL_PHASES[phase] then return curl end
  local t = ngx_module()
  local ok, why = t.available()
  if ok then return t end
  return nil, why or ("cosockets are not available in nginx's " .. tostring(phase) .. " phase")
end
local choose = M.choose

--- The transport for a request sent now; raises (at the user's line)
-- where none can be used.
-- @treturn table the transport module
-- @raise where no request can be made (an nginx phase without cosockets)
function M.current()
  local t, why = choose()
  if t then return t end
  raise(("connkit: no request can be made here: %s; make it in a timer instead:"
    .. " ngx.timer.at(0, function() ... end)"):format(why))
end

--- connkit.transport(): the name of the transport a request made here would
-- use, or nil and why none can be used.
-- @treturn[1] string "curl" or "ngx"
-- @return[2] nil
-- @treturn[2] string why none can be used
function M.name()
  local t, why = choose()
  if t then return t.name end
  return nil, why
end

--- connkit.use_transport(name): "curl" or "ngx" for every later request of
-- this Lua state, or "auto" for the choice above. Raises where the named
-- transport cannot work (ngx outside nginx or where cosockets are not
-- available).
-- @tparam string name "curl", "ngx" or "auto"
-- @raise for another name, or where the named transport cannot work
function M.use(name)
  if name == "auto" then
    forced = nil
    M.curl_only = not ngx_host
    return
  end
  if name == "curl" then
    forced = curl
    M.curl_only = true
    return
  end
  if name ~= "ngx" then
    raise(("connkit.use_transport: name must be 'curl', 'ngx' or 'auto', not %s"):format(
      type(name) == "string" and ("'" .. name .. "'") or ("a " .. type(name))))
  end
  if not ngx_host then raise("connkit.use_transport: the ngx transport works only inside OpenResty (nginx with its Lua module)") end
  local t = ngx_module()
  local ok, why = t.available()
  if not ok then raise("connkit.use_transport: the ngx transport cannot work here: " .. tostring(why)) end
  forced = t
  M.curl_only = false
end

return M
