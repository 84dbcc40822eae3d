-- What the shared dict holds for an account, read raw (not through the
-- store): how many record and lock entries, and whether args.needle (a
-- token the spec saw on the wire) appears in any value in clear. Then the
-- record read through a store with args.key and one without a key.
local connkit = require "connkit"

return function(args)
  local dict = ngx.shared[args.dict or "tokens"]
  local out = { records = 0, locks = 0, needle_seen = false }
  for _, k in ipairs(dict:get_keys(0)) do
    if k:find("/" .. args.id, 1, true) then
      local v = dict:get(k)
      if k:find("^connkit/rec/") then out.records = out.records + 1 end
      if k:find("^connkit/lock/") then out.locks = out.locks + 1 end
      if type(v) == "string" and v:find(args.needle, 1, true) then out.needle_seen = true end
    end
  end
  local rec = connkit.store.shared(args.dict or "tokens", { key = args.key }).get(args.id)
  out.with_key_matches = rec ~= nil and rec.access_token == args.needle
  local none, err = connkit.store.shared(args.dict or "tokens").get(args.id)
  out.without_key = { record = none ~= nil, code = err and err.code }
  local other = ("A"):rep(43) .. "="
  local _, err2 = connkit.store.shared(args.dict or "tokens", { key = other }).get(args.id)
  out.other_key_code = err2 and err2.code
  return out
end
