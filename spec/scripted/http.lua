--- A tiny curl-based HTTP client for the specs' peers (their control routes),
-- so peer helpers work before, and independently of, connkit's own client.
-- Request bodies go through a private temp file, never on a command line.
local cjson = require "cjson.safe"

local M = {}

--- Percent-encodes every byte outside the RFC 3986 unreserved set.
function M.urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return ("%%%02X"):format(c:byte())
  end))
end

--- A table as an application/x-www-form-urlencoded string (keys sorted).
function M.form(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = M.urlencode(k) .. "=" .. M.urlencode(t[k])
  end
  return table.concat(parts, "&")
end

local function tmpfile()
  local name = os.tmpname() -- mkstemp: created empty, mode 0600
  return name
end

--- Sends one request with curl. opts: form (table) or body (string) with
-- content_type; headers (table); timeout (seconds, default 10); jar (cookie
-- file). Returns status (number, 0 when there was no reply), body, decoded
-- JSON (or nil), and curl's error text when it failed.
function M.request(helpers, method, url, opts)
  opts = opts or {}
  local q = helpers.shell_quote
  local out = tmpfile()
  local args = { "curl -sS -g --max-time " .. (opts.timeout or 10), "-X", q(method),
    "-o", q(out), "-w", q("%{http_code}") }
  local bodyfile
  local body = opts.body or (opts.form and M.form(opts.form))
  if body then
    bodyfile = tmpfile()
    helpers.write_file(bodyfile, body)
    args[#args + 1] = "--data-binary @" .. q(bodyfile)
    args[#args + 1] = "-H " .. q("Content-Type: " .. (opts.content_type or
      (opts.form and "application/x-www-form-urlencoded" or "application/octet-stream")))
  end
  for k, v in pairs(opts.headers or {}) do
    args[#args + 1] = "-H " .. q(k .. ": " .. v)
  end
  if opts.jar then
    args[#args + 1] = "-c " .. q(opts.jar) .. " -b " .. q(opts.jar)
  end
  args[#args + 1] = q(url)
  local ok, status_text = helpers.run(table.concat(args, " "))
  local reply = helpers.read_file(out) or ""
  os.remove(out)
  if bodyfile then os.remove(bodyfile) end
  local status = tonumber((status_text or ""):match("(%d%d%d)%s*$")) or 0
  -- status 0: no HTTP reply (also when the exit code is lost, as on LuaJIT)
  if not ok or status == 0 then return status, reply, nil, status_text end
  return status, reply, cjson.decode(reply)
end

--- GET url; returns the decoded JSON reply, or nil and a message.
function M.get_json(helpers, url)
  local status, body, json, err = M.request(helpers, "GET", url)
  if json == nil then
    return nil, ("GET %s: HTTP %d %s"):format(url, status, err or body:sub(1, 200))
  end
  return json, status
end

--- POST form to url; returns the decoded JSON reply, or nil and a message.
function M.post_json(helpers, url, form)
  local status, body, json, err = M.request(helpers, "POST", url, { form = form or {} })
  if json == nil then
    return nil, ("POST %s: HTTP %d %s"):format(url, status, err or body:sub(1, 200))
  end
  return json, status
end

return M
