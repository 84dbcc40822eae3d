--- Responses: status, body, headers (lower-case names, parsed on first
-- use), attempts, and res:json().
-- @module connkit.http.response
local core = require "connkit.core"
local errors = require "connkit.errors"
local cjson = require "cjson.safe"


--- A reply: what account:request, req:send() and handle:result() give.
-- tostring(res) shows the status and size.
-- @table Response
-- @field status the HTTP status (a number)
-- @field headers the header fields, lower-case names, repeated ones joined
--   with ", " (parsed on first use)
-- @field body the body (a string; decoded when it came compressed), or nil
--   when it was streamed (output, on_data)
-- @field size the body's size in bytes (for a streamed body, the bytes
--   written)
-- @field url the URL of the last transfer (after redirects), a credential
--   in its query shown as "***"
-- @field time seconds the last transfer took
-- @field http_version "1.0", "1.1", "2" or "3"
-- @field attempts how many attempts the request made (retries, the retry
--   after a refresh)
local Response = {}
Response.__name = "connkit.response"
-- one transfer unless the retry rules made more (then the response has its
-- own field)
Response.attempts = 1
-- HTTP/1.1 unless the transport says otherwise
Response.http_version = "1.1"

-- res.headers is parsed from the raw header block on first use: most
-- callers read only status and body.
function Response.__index(res, k)
  if k == "headers" then
    local h = core.parse_headers(rawget(res, "_raw_headers") or "")
    rawset(res, "headers", h)
    return h
  end
  if k == "size" then -- (a streamed reply has its own: it has no body)
    local body = rawget(res, "body")
    return body and #body or 0
  end
  return Response[k]
end

--- The body decoded as JSON (lua-cjson; JSON null is cjson.null).
-- @treturn[1] any the decoded value
-- @return[2] nil
-- @treturn[2] connkit.errors.Error code "json": not JSON, or a streamed body
function Response:json()
  if self.body == nil then
    return nil, errors.new("json", "the response body was streamed (output or on_data), not kept", { status = self.status })
  end
  local v, err = cjson.decode(self.body)
  if v == nil and err then
    return nil, errors.new("json", "the response body is not JSON: " .. tostring(err), { status = self.status })
  end
  return v
end

function Response:__tostring()
  return ("connkit.response %d (%d bytes)"):format(self.status, self.size or #self.body)
end

core.set_response_metatable(Response)

return Response
