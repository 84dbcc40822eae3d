-- Requests one after the other through the ngx transport to args.url (an
-- echo that tells the connection number); args.close_first sends the first
-- one with "Connection: close" (the peer then closes, so it is not pooled).
return function(args)
  local t = require "connkit.transport.ngx"
  local bodies = {}
  for i = 1, tonumber(args.n or 3) do
    local lines = (i == 1 and args.close_first) and { "Connection: close" } or {}
    local res, code, msg = t.perform({ method = "GET", url = args.url, header_lines = lines, timeout = 5 })
    bodies[i] = res and res.body:match("connection=(%d+)") or (code .. ": " .. msg)
  end
  return bodies
end
