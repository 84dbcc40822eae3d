-- A request made in a phase of nginx: returns what connkit.transport() says
-- there and what a request does (its reply's status or the error it
-- raised). From a filter or log phase (the harness's `locations`, see
-- nginx_e2e_spec) the result is kept in ngx.shared.e2e under the phase's
-- name; /run/e2e_phase_probe?phase=P reads it back (from the content phase).
local connkit = require "connkit"
local cjson = require "cjson.safe"

local function probe(mark)
  local name, why = connkit.transport()
  local acct = connkit.integration {
    name = "E2E phase", key = "e2ephase", auth = "none", base_url = E2E.scripted,
  }:account {}
  local ok, res, err = pcall(acct.get, acct, "/status", { query = { code = 200, mark = mark }, timeout = 5 })
  return {
    phase = ngx.get_phase(), transport = name, why = why,
    raised = not ok and tostring(res) or nil,
    status = ok and res and res.status or nil,
    err = ok and err and err.code or nil,
  }
end

return function(args)
  if ngx.get_phase() == "content" then
    if args.read then return cjson.decode(ngx.shared.e2e:get(args.read) or "null") end
    return probe(args.mark)
  end
  -- a filter or log phase: args is the mark
  local r = probe(args)
  ngx.shared.e2e:set(r.phase, cjson.encode(r))
end
