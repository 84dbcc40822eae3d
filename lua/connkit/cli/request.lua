--- The connkit request command: one HTTP request with the account's
-- credentials, `connkit request DEF --account ID [-X M] URL ...`. The body goes to stdout (pretty JSON on a
-- terminal) or to -o FILE; -i puts the status line and headers first.
-- Exit status 0 for a 2xx reply, 22 for any other (the body is printed
-- all the same, and stderr says the status), other statuses for connkit
-- errors (connkit.cli.status_codes).
-- @module connkit.cli.request
local cjson = require "cjson.safe"
local context = require "connkit.cli.context"
local fail = require "connkit.cli.fail"
local output = require "connkit.cli.output"
local codes = require "connkit.cli.status_codes"

local M = {}

-- "@FILE" reads a file, "@-" stdin; anything else is the text itself.
local function text_or_file(opt, v)
  if v:sub(1, 1) ~= "@" then return v end
  local path = v:sub(2)
  if path == "-" then return io.stdin:read("*a") end
  local f = io.open(path, "rb")
  if not f then fail.usage(opt .. ": cannot read " .. path) end
  local s = f:read("*a")
  f:close()
  return s
end

local function pairs_of(opt, list)
  local t = {}
  for _, item in ipairs(list or {}) do
    local k, v = item:match("^([^=]+)=(.*)$")
    if not k then fail.usage(opt .. ": expected name=value, got '" .. item .. "'") end
    local cur = t[k]
    if cur == nil then t[k] = v
    elseif type(cur) == "table" then cur[#cur + 1] = v
    else t[k] = { cur, v } end
  end
  return t
end

local function headers_of(list)
  local t = {}
  for _, h in ipairs(list or {}) do
    local name, value = h:match("^([^:%s]+):%s*(.-)%s*$")
    if not name then fail.usage("-H: expected 'Name: value', got '" .. h .. "'") end
    t[name] = value
  end
  return t
end

local function has_header(headers, name)
  for k in pairs(headers) do
    if k:lower() == name then return true end
  end
  return false
end

--- The `multipart` request option for --form fields: name=value, or
-- name=@path for a file (README "Files in and out").
-- @tparam {string,...} list the --form arguments
-- @treturn table the parts
function M.multipart(list)
  local parts = {}
  for _, item in ipairs(list) do
    local name, v = item:match("^([^=]+)=(.*)$")
    if not name then fail.usage("--form: expected name=value or name=@path, got '" .. item .. "'") end
    if v:sub(1, 1) == "@" then
      local path = v:sub(2)
      local f = io.open(path, "rb")
      if not f then fail.usage("--form " .. name .. ": cannot read " .. path) end
      f:close()
      parts[#parts + 1] = { name = name, file = path }
    else
      parts[#parts + 1] = { name = name, value = v }
    end
  end
  return parts
end

-- Runs fn(...); a connkit without the option or method named `feature`
-- ("multipart", "pages") refuses it with a clear message.
local function needs(feature, what, fn, ...)
  local r = { pcall(fn, ...) }
  if not r[1] then
    local msg = tostring(r[2])
    if msg:find("unknown option '" .. feature .. "'", 1, true) then
      fail.usage(what .. " needs a connkit with " .. feature .. " (this one has none)")
    end
    if fail.is(r[2]) or msg:find("interrupted!", 1, true) then error(r[2], 0) end
    fail.usage(fail.clean(msg)) -- connkit refused an option: a usage mistake
  end
  return r[2], r[3]
end

--- Sends the request with its body streamed to `path` (the request option
-- `output`: into `path.part`, renamed over `path` when a 2xx reply is
-- complete, so a failed request leaves an existing file as it was; a reply
-- that is not 2xx keeps its body in memory and the file untouched).
-- Returns the response, or nil and an error; a file that cannot be
-- written exits 23, as curl does.
-- @tparam connkit.account.Account acct the account
-- @tparam table opts the request options
-- @tparam string path the file (-o)
-- @treturn[1] connkit.http.response.Response the response
-- @return[2] nil
-- @treturn[2] connkit.errors.Error the error
function M.save_body(acct, opts, path)
  opts.output = path
  local res, err = acct:request(opts)
  if not res and err and err.code == "io" then fail.exit(23, "-o: " .. tostring(err.message)) end
  return res, err
end

-- The request options the arguments describe.
local function options(a)
  local headers = headers_of(a.header)
  local opts = { url = a.url, headers = headers }
  if #(a.query or {}) > 0 then opts.query = pairs_of("-q", a.query) end
  if a.timeout then
    opts.timeout = tonumber(a.timeout)
    if not opts.timeout or opts.timeout <= 0 then fail.usage("--timeout must be a number of seconds") end
  end
  if a.json then
    local body = text_or_file("--json", a.json)
    local _, jerr = cjson.decode(body)
    if jerr then fail.usage("--json: not JSON (" .. tostring(jerr) .. ")") end
    opts.body = body
    if not has_header(headers, "content-type") then headers["Content-Type"] = "application/json" end
  elseif a.data then
    opts.body = text_or_file("--data", a.data)
    if not has_header(headers, "content-type") then headers["Content-Type"] = "application/x-www-form-urlencoded" end
  elseif a.form and #a.form > 0 then
    opts.multipart = M.multipart(a.form)
  end
  local has_body = opts.body ~= nil or opts.multipart ~= nil
  opts.method = a.method or (has_body and "POST" or "GET")
  if not next(headers) then opts.headers = nil end
  return opts
end

local function reply_status(res, label)
  if res.status >= 200 and res.status < 300 then return codes.OK end
  io.stderr:write(("connkit: %s: the server answered %d\n"):format(label, res.status))
  return codes.HTTP
end

-- --paginate: every page's body, one per line.
local function paginate(acct, opts, a)
  if type(acct.pages) ~= "function" then
    fail.usage("--paginate needs a connkit with pagination (account:pages; this one has none)")
  end
  local url = opts.url
  opts.url = nil
  local status = codes.OK
  for page, err in acct:pages(url, opts) do
    if not page then fail.error(err, "--paginate") end
    if a.include then output.head(page) end
    local body = page.body or ""
    io.stdout:write(body)
    if body:sub(-1) ~= "\n" then io.stdout:write("\n") end
    if page.status and (page.status < 200 or page.status >= 300) then status = codes.HTTP end
  end
  return status
end

--- Runs the command.
-- @tparam table a the parsed arguments (connkit.cli.args)
-- @treturn integer the exit status
function M.run(a)
  local c = context.account(a)
  local acct = c.account
  local opts = options(a)
  if a.paginate then
    if a.output then fail.usage("--paginate and -o cannot be used together") end
    return needs("pages", "--paginate", paginate, acct, opts, a)
  end
  local label = opts.method .. " " .. a.url
  local res, err
  if a.output then
    res, err = needs("multipart", "--form", M.save_body, acct, opts, a.output)
  else
    res, err = needs("multipart", "--form", acct.request, acct, opts)
  end
  if not res then fail.error(err) end
  if a.include then output.head(res) end
  if not a.output then output.body(res) end
  io.stdout:flush()
  return reply_status(res, label)
end

return M
