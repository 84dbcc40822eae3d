--- Runs the scenarios of spec/nginx/ inside nginx (spec/peers/openresty.lua).
-- GET /run/<name>?<args> loads spec/nginx/<name>.lua once per worker; the
-- file returns function(args) -> result, called in the content phase with
-- the query arguments. The result goes back as JSON (status 200); a Lua
-- error as { error = message, traceback = ... } with status 500, also
-- written to the error log; an unknown scenario is a 404.
local cjson = require "cjson.safe"

local harness = { dir = nil } -- set by the peer's init_by_lua

local loaded = {} -- name -> the scenario function, per worker

local function reply(status, value)
  local body, err = cjson.encode(value)
  if not body then
    status = 500
    body = cjson.encode({ error = "the scenario's result is not JSON: " .. tostring(err) })
  end
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(body)
  return ngx.exit(status)
end

local function scenario(name)
  local fn = loaded[name]
  if fn then return fn end
  local path = harness.dir .. "/" .. name .. ".lua"
  local chunk, err = loadfile(path)
  if not chunk then return nil, err end
  fn = chunk()
  if type(fn) ~= "function" then return nil, path .. " does not return a function" end
  loaded[name] = fn
  return fn
end

--- The content handler of /run/<name>.
function harness.run(name)
  local fn, err = scenario(name)
  if not fn then
    ngx.log(ngx.ERR, "scenario ", name, ": ", err)
    return reply(err:find("No such file", 1, true) and 404 or 500, { error = err })
  end
  local args = ngx.req.get_uri_args(100)
  local message
  local ok, result = xpcall(function() return fn(args) end, function(e)
    message = tostring(e)
    return debug.traceback(message, 2)
  end)
  if not ok then
    ngx.log(ngx.ERR, "scenario ", name, " failed: ", result)
    return reply(500, { error = message, traceback = result })
  end
  return reply(200, result == nil and cjson.null or result)
end

return harness
