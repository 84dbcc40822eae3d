-- Fuzz target: known_hosts lines and patterns (csrc/sftp.c core.known_hosts).
-- Input: the host name to look up (first line; "host" or "[host]:port"),
-- then the known_hosts file.
-- Oracles: the lookup takes linear time (under TIME_BOUND seconds for any
-- input of the fuzzer's sizes: backtracking on "*" is exponential); and for
-- the first line, connkit finds the host on it exactly when
-- libssh2_knownhost_checkp does, wherever libssh2 1.10 reads the line as
-- OpenSSH does. Lines it reads otherwise are not compared:
--   * plain lists with "*", "?", "!", "@" or upper case (libssh2 has no
--     patterns, negation or markers, and compares names case-sensitively);
--   * plain lists with an empty entry (it reads "a,,b" as "a," and "b");
--   * hashed entries whose salt or hash is not canonical base64 (it skips
--     characters outside the alphabet and takes a missing "=" padding,
--     where OpenSSH and connkit refuse the entry);
--   * key types libssh2 does not know.
local core = require "connkit.core"

local TIME_BOUND = 1.0
local KEY_TYPES = { ["ssh-rsa"] = true, ["ssh-dss"] = true, ["ssh-ed25519"] = true,
  ["ecdsa-sha2-nistp256"] = true, ["ecdsa-sha2-nistp384"] = true, ["ecdsa-sha2-nistp521"] = true }
local path = os.tmpname()

local function lookup(content, name)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  local t0 = core.now()
  local found, code, msg = core.known_hosts(path, name)
  local took = core.now() - t0
  assert(found, ("known_hosts failed: %s %s"):format(tostring(code), tostring(msg)))
  assert(took < TIME_BOUND, ("lookup took %.2f s for %d bytes: not linear time"):format(took, #content))
  return found
end

-- Whether s is base64 as OpenSSH writes it: whole groups of four, "="
-- only as the padding at the end.
local function canonical_base64(s)
  return #s > 0 and #s % 4 == 0 and s:find("^[%w+/]+=?=?$") ~= nil
end

return function(data)
  local name, content = data:match("^([^\n]*)\n(.*)$")
  if not name or name:find("%z") or #name > 1000 then return end
  name = name:lower()
  lookup(content, name)

  local line = content:match("^[^\n]*")
  local hosts, ktype = line:match("^[ \t]*(%S+)[ \t]+(%S+)")
  -- (libssh2 reads unknown key types as such and never matches them)
  if not hosts or not KEY_TYPES[ktype] or line:find("[%z\r]") then return end
  if hosts:sub(1, 3) == "|1|" then
    local salt, hash = hosts:match("^|1|([^|]*)|(.*)$")
    if not (salt and canonical_base64(salt) and canonical_base64(hash)) then return end
  elseif hosts:find("[%*%?!@#A-Z]") or hosts:find(",,", 1, true) or hosts:find("^,")
      or hosts:find(",$") then
    return
  end
  -- (an empty name, which no caller asks for, matches an empty list entry)
  if name == "" then return end
  local ref = fuzz.knownhost(line .. "\n", name)
  if ref == nil then return end
  local found = lookup(line .. "\n", name)
  assert((#found > 0) == ref, ("connkit %s %q on %q, libssh2 %s"):format(
    #found > 0 and "finds" or "does not find", name, line, ref and "does" or "does not"))
end
