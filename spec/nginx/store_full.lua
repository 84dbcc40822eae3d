-- A shared store on a dict that fills up: two records written (both slots
-- used), the dict filled with other entries until it has no room, then a
-- bigger record and a lock asked for. Returns what each step answered and
-- the record read back. args: dict (a small one of its own), key.
local connkit = require "connkit"

return function(args)
  local dict = ngx.shared[args.dict]
  dict:flush_all()
  dict:flush_expired()
  local s = connkit.store.shared(args.dict, { key = args.key })
  local out = {}
  out.put1 = s.put("full", { access_token = "first", expires_at = 1 }) == true
  out.put2 = s.put("full", { access_token = "second", expires_at = 2 }) == true
  -- fill: big entries first, then smaller ones, until nothing fits
  local n = 0
  for _, size in ipairs({ 16384, 4096, 1024, 256, 64, 16, 1 }) do
    while dict:safe_set("filler/" .. n, ("x"):rep(size)) do n = n + 1 end
  end
  out.fillers = n
  local ok, err = s.put("full", { access_token = ("third"):rep(2000), expires_at = 3 })
  out.put3 = { ok = ok == true, code = err and err.code, message = err and err.message }
  local rec, gerr = s.get("full")
  out.after = rec and rec.access_token or ("error: " .. tostring(gerr and gerr.code))
  local unlock, lerr = s.lock("another id", 0)
  out.lock = { ok = unlock ~= nil, code = lerr and lerr.code }
  if unlock then unlock() end
  dict:flush_all()
  dict:flush_expired()
  return out
end
