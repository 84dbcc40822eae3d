--- The scripted HTTP peer (spec/scripted/server.js, plain node): token
-- endpoints and resources that misbehave on purpose, on a free loopback port,
-- plus a listener that accepts and never answers. Every request is recorded.
--
-- Paths (query options in brackets):
--   /token/ok [ttl=N|none, rt=0, type=, scope=]   good JSON token reply
--   /token/html503            503 text/html
--   /token/string-expires     200, "expires_in":"3600" (a string)
--   /token/no-expires         200 without expires_in
--   /token/expires-raw [v=S | json=J]  200, expires_in the string S or the JSON value J
--   /token/expires-at [ttl=]  200 with expires_at (epoch seconds) instead of expires_in
--   /token/error200           200 {"error":"invalid_grant",...}
--   /token/invalid-grant      400 {"error":"invalid_grant",...}
--   /token/form               200 application/x-www-form-urlencoded token reply
--   /token/empty              200 with an empty body
--   /token/reset              status + headers + part of the body, then a TCP reset
--   /token/slow [delay=2]     a good reply after `delay` seconds
--   /token/flaky [key=, fail=2]  503 `fail` times per key, then a good reply
--   /login [ttl=600]          custom token: user/password (form body or query) ->
--                             {"data":{"token":"...","ttl":"600"}} or 401
--   /resource                 200 for a live token issued here, else 401 + WWW-Authenticate
--   /resource/stale-first [key=]  the first token seen is refused for ever, others 200
--   /status?code=N            that status
--   /flaky [key=, fail=2, status=503]  fails `fail` times per key, then 200 {"attempt":n}
--   /ratelimit [key=, fail=1, retry_after=1, date=1]  429 + Retry-After, then 200
--   /delay?s=N                200 after N seconds
--   /hang                     reads the request, never answers
--   /token/crlf-first [key=]  first reply per key: an access token holding CR/LF; then good ones
--   /token/echo ?field=F [at=N, mode=desc|body]  echoes request field F after N padding chars:
--                             400 error_description (desc) or 503 text/plain body (body)
--   /raw/huge-header          a 200 KB header line
--   /raw/bad-status           a malformed status line ("HTTP/1.1 2OO OK")
--   /redirect/slow [n=3, s=1, key=]  302 to n-1 after s seconds each; n=0: 200
-- Control (not recorded): /last?path=P, /requests[?path=P], /stats[?key=K],
--   /invalidate-all (every token issued so far becomes invalid), /reset.
local http = require "scripted.http"

return function(helpers)
  local port, hang_port = helpers.free_port(), helpers.free_port()
  local server = helpers.root .. "/spec/scripted/server.js"
  local proc = helpers.spawn("scripted", ("node %s %d %d"):format(helpers.shell_quote(server), port, hang_port))
  helpers.wait_port(port, 15, proc)
  helpers.wait_port(hang_port, 5, proc)
  local base = "http://127.0.0.1:" .. port

  local info = {
    port = port,
    url = base,
    hang_port = hang_port,                       -- accepts, never reads nor answers
    hang_url = "http://127.0.0.1:" .. hang_port,
    log = proc.log,
    login = { user = "alice", password = "pa ss&w=rd%+/?" }, -- what /login accepts
  }

  --- The last request recorded for `path` (method, path, query, headers, body,
  -- form, json, time), or nil when none.
  function info.last(path)
    local r = http.get_json(helpers, base .. "/last?path=" .. http.urlencode(path))
    if r and r.error then return nil end
    return r
  end
  --- Every recorded request, optionally only for `path`, oldest first.
  function info.requests(path)
    return assert(http.get_json(helpers, base .. "/requests" ..
      (path and ("?path=" .. http.urlencode(path)) or "")))
  end
  --- Attempts seen for a key of /flaky, /ratelimit (and "token:<key>" for /token/flaky).
  function info.attempts(key)
    return assert(http.get_json(helpers, base .. "/stats?key=" .. http.urlencode(key))).attempts
  end
  --- Makes every token issued so far invalid for /resource.
  function info.invalidate_all() return assert(http.post_json(helpers, base .. "/invalidate-all")) end
  --- Forgets recorded requests, attempt counts and tokens.
  function info.reset() return assert(http.post_json(helpers, base .. "/reset")) end
  --- Raw request through curl: status, body, json, curl error.
  function info.request(method, path, opts) return http.request(helpers, method, base .. path, opts) end

  function info.stop() helpers.stop(proc) end
  return info
end
