-- connkit.store.shared's argument and option checks inside nginx: each
-- case's error message (nil when it did not raise).
local connkit = require "connkit"

local CASES = {
  missing_dict = { "no_such_dict" },
  dict_name_type = { 42 },
  unknown_option = { "tokens", { lock_timeot = 1 } },
  bad_key = { "tokens", { key = "not base64!" } },
  short_key = { "tokens", { key = "c2hvcnQ=" } },
  key_type = { "tokens", { key = 32 } },
  bad_lock_ttl = { "tokens", { lock_ttl = 0 } },
  bad_lock_timeout = { "tokens", { lock_timeout = -1 } },
  both_keys = { "tokens", { key = ("A"):rep(43) .. "=", key_file = "/nonexistent" } },
  fine = { "tokens", { key = ("A"):rep(43) .. "=", lock_timeout = 0, lock_ttl = 0.5 } },
}

return function()
  local out = {}
  for name, case in pairs(CASES) do
    local ok, err = pcall(connkit.store.shared, case[1], case[2])
    out[name] = ok and "ok" or tostring(err)
  end
  out.tostring = tostring(connkit.store.shared("tokens", { key = ("A"):rep(43) .. "=" }))
  return out
end
