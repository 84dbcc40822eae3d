-- One request with the file options inside nginx (spec/nginx_files_spec.lua):
-- args.base (the scripted peer), args.opts (JSON request options; on_data
-- may be "collect", "false" or "raise"), args.via ("ngx" or "curl": the
-- transport for this request). Returns the reply's fields (no body when it
-- was streamed), or the error's code and message, the transport used, what
-- on_data saw (sha256 of every byte, pieces, the largest) and the worker's
-- peak memory (VmHWM, kB) before and after.
local connkit = require "connkit"
local core = require "connkit.core"
local cjson = require "cjson.safe"

local function hwm()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmHWM:%s+(%d+) kB")
    if kb then return tonumber(kb) end
  end
end

return function(args)
  local acct = connkit.integration { name = "F", key = "f", auth = "api_token", base_url = args.base }
    :account { credentials = { token = "ngx-files-token" } }
  local opts = assert(cjson.decode(args.opts))
  local pieces, biggest = {}, 0
  if opts.on_data == "collect" then
    opts.on_data = function(c)
      pieces[#pieces + 1] = c
      if #c > biggest then biggest = #c end
    end
  elseif opts.on_data == "false" then
    opts.on_data = function() return false end
  elseif opts.on_data == "raise" then
    opts.on_data = function() error("disk full", 0) end
  end
  if args.via == "curl" then connkit.use_transport("curl") end
  local out = { transport = connkit.transport(), hwm_before = hwm() }
  local ok, res, err = pcall(acct.request, acct, opts)
  connkit.use_transport("auto")
  out.hwm_after = hwm()
  if not ok then error(res, 0) end
  if res then
    out.status, out.size, out.url, out.time, out.http_version = res.status, res.size, res.url, res.time, res.http_version
    out.has_body = res.body ~= nil
    out.body = res.body and #res.body < 65536 and res.body or nil
    out.sha256 = res.headers["x-sha256"]
    out.attempts = res.attempts
  else
    out.code, out.message = err.code, err.message
  end
  if #pieces > 0 then
    out.data_sha256 = core.hex(core.sha256(table.concat(pieces)))
    out.pieces, out.biggest = #pieces, biggest
  end
  return out
end
