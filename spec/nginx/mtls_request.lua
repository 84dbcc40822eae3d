-- mTLS from inside a worker (the ngx transport): args.base is an https
-- origin that asks for a client certificate and echoes what it saw. Three
-- rounds of requests by account "a" (args.a_cert/a_key) and account "b"
-- (args.b_cert/b_key, key encrypted when args.b_password is given), one
-- account with no certificate, and one with args.bad_password for b's key.
local connkit = require "connkit"

return function(args)
  local n = 0
  local function account(tls)
    n = n + 1
    return connkit.integration { name = "mTLS ngx " .. n, key = "mtlsngx" .. n, auth = "none",
      base_url = args.base, tls = tls }:account {}
  end
  local function get(acct)
    local res, err = acct:get("/who", { timeout = 5 })
    if res then return { status = res.status, body = res.body } end
    return { code = err.code, message = tostring(err) }
  end
  local a = account { cert_file = args.a_cert, key_file = args.a_key }
  local b = account { cert_file = args.b_cert, key_file = args.b_key, key_password = args.b_password }
  local out = { transport = connkit.transport(), a = {}, b = {} }
  for i = 1, 3 do
    out.a[i] = get(a)
    out.b[i] = get(b)
  end
  out.none = get(account(nil))
  out.bad = get(account { cert_file = args.b_cert, key_file = args.b_key, key_password = args.bad_password })
  out.mismatch = get(account { cert_file = args.a_cert, key_file = args.b_key, key_password = args.b_password })
  return out
end
