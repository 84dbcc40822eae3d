-- Called from phases without cosockets (set_by_lua, header_filter_by_lua,
-- log_by_lua; see nginx_transport_spec.lua): what connkit.transport() says
-- there and what a request does (it must raise, naming the phase and
-- suggesting ngx.timer.at). One line: name|why|request ok|error.
return function()
  local connkit = require "connkit"
  local name, why = connkit.transport()
  local api = connkit.integration { name = "Phase", key = "phase", auth = "none", base_url = "http://127.0.0.1:9" }
  local acct = api:account { id = "p" }
  local ok, err = pcall(acct.get, acct, "/x")
  return ("%s|%s|%s|%s"):format(tostring(name), tostring(why), tostring(ok), tostring(err))
end
