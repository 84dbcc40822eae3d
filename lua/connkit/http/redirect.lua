--- Redirects, for requests that ask for them (`follow`): 301/302/303 turn
-- a POST into a GET, 307/308 keep method and body, and the account's
-- credentials and request parameters are dropped from the first hop that
-- leaves the request's origin on.
-- @module connkit.http.redirect
local core = require "connkit.core"
local urls = require "connkit.http.url"
local transport = require "connkit.transport"
local hooks = require "connkit.hooks"
local files = require "connkit.http.files"

local now = core.now

local M = {}

--- The statuses that redirect.
M.STATUS = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }
local REDIRECT = M.STATUS

-- A stand-in request for the error of one redirect hop.
local function spec_for_error(req, spec)
  return setmetatable({ method = spec.method, url = spec.url, _account = rawget(req, "_account"),
    header_lines = spec.header_lines }, getmetatable(req))
end

--- Follows the redirects of reply `res` to request `req` (which asked for
-- them with `follow`); `fail` makes the error of a failed hop. Auth and request
-- parameter headers go only to the origin the request was made for. Every
-- hop gets what is left until `deadline` (core.now() seconds): the request's
-- timeout covers all of them. `n`: the attempt number the account's hooks
-- are told (each hop is a transfer they see, with `redirect` = its number).
-- @tparam connkit.http.request.Request req the request
-- @tparam connkit.http.response.Response res the reply
-- @tparam function fail fail(req, code, msg, extra) -> nil, err
-- @tparam number deadline the end of the request (connkit.core.now() seconds)
-- @tparam integer n the attempt's number
-- @treturn[1] connkit.http.response.Response the last hop's reply
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error (code "too_many_redirects", or a hop's)
function M.follow(req, res, fail, deadline, n)
  local hops, max = 0, req.follow
  local spec = req
  local origin = urls.origin(req.url)
  local cross = false
  local t = transport.current()
  while REDIRECT[res.status] and res.redirect_url do
    if hops >= max then
      return fail(req, "too_many_redirects", ("more than %d redirects"):format(max), { status = res.status })
    end
    local left = deadline - now()
    if left <= 0 then
      return fail(req, "timeout", ("the request's timeout (%s s) ran out after %d redirects")
        :format(core.format_number(req.timeout), hops), { status = res.status })
    end
    hops = hops + 1
    local url = res.redirect_url
    if urls.origin(url) ~= origin then cross = true end
    local method, body = spec.method, spec.body
    local to_get = res.status == 303 or ((res.status == 301 or res.status == 302) and method == "POST")
    if to_get then
      method, body = (method == "HEAD" and "HEAD" or "GET"), nil
    end
    local lines = rawget(req, "header_lines")
    if cross then
      lines = rawget(req, "_own_lines") or {}
    elseif rawget(req, "_dpop") then -- (a proof for this hop's method and URL: connkit.auth.dpop)
      local proof, perr = require("connkit.auth.dpop").proof(rawget(req, "_account"), method, url, rawget(req, "_token") or nil)
      if not proof then return nil, perr end
      local l = {}
      for i, x in ipairs(lines) do l[i] = x end
      l[#l + 1], lines = "DPoP: " .. proof, l
    end
    spec = {
      method = method, url = url, body = body, header_lines = lines, timeout = left,
      connect_timeout = req.connect_timeout, ca_file = req.ca_file, max_body = req.max_body,
      client_tls = not cross and req.client_tls or nil, -- (like the credentials)
      decompress = req.decompress,
    }
    files.carry(req, spec, not to_get)
    local w, code, msg = t.of_table(spec)
    local r = w
    local acct = rawget(req, "_account")
    local call = w and acct._hooks and hooks.begin(acct, spec, "api", n, t.name, hops)
    if w then r, code, msg = t.perform(w) end
    if not r then
      local _, err = fail(spec_for_error(req, spec), code, msg)
      if call then hooks.finish(call, nil, err) end
      return nil, err
    end
    if call then hooks.finish(call, r) end
    res = r
  end
  res.redirects = hops
  if hops > 0 and res.url then res.url = rawget(req, "_account"):_redact(res.url) end
  return res
end

return M
