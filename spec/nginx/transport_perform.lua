-- One finished request (args.spec, JSON) through the ngx transport and, with
-- args.via = "both", through the curl transport too, inside the same nginx
-- worker: what each returned (reply fields, or code and message) and how
-- long it took.
local cjson = require "cjson.safe"
local ngx_transport = require "connkit.transport.ngx"

local function curl_perform(spec)
  local ok, curl = pcall(require, "connkit.transport.curl")
  if ok then return curl.perform(spec) end
  return require("connkit.core").engine():perform(spec)
end

local function outcome(perform, spec)
  ngx.update_time()
  local t0 = ngx.now()
  local res, code, msg = perform(spec)
  ngx.update_time()
  local o = { elapsed = ngx.now() - t0 }
  if res then
    local mt = getmetatable(res)
    o.status, o.body, o.headers, o.redirect_url = res.status, res.body, res.headers, res.redirect_url
    o.raw_headers, o.body_len = res._raw_headers, #res.body
    o.body_head = res.body:sub(1, 2):gsub(".", function(c) return ("%02x"):format(c:byte()) end)
    o.response_mt = mt and mt.__name or false
  else
    o.code, o.message = code, msg
  end
  return o
end

return function(args)
  local spec = assert(cjson.decode(args.spec))
  local r = { ngx = outcome(ngx_transport.perform, spec) }
  if args.via == "both" then r.curl = outcome(curl_perform, spec) end
  return r
end
