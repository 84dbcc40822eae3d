--- Signing keys for the JWT specs, made by the openssl command in `dir`:
-- rsa.pem (2048 bits), ec.pem (P-256), ed.pem (Ed25519) and their public
-- keys rsa.pub, ec.pub, ed.pub; then `extra` (a shell command run in `dir`)
-- for the keys a spec needs besides.
local helpers = require "helpers"

return function(dir, extra)
  helpers.sh("cd " .. helpers.shell_quote(dir)
    .. " && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem 2>/dev/null"
    .. " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.pem"
    .. " && openssl genpkey -algorithm ED25519 -out ed.pem"
    .. " && for k in rsa ec ed; do openssl pkey -in $k.pem -pubout -out $k.pub || exit 1; done"
    .. (extra and (" && " .. extra) or ""))
end
