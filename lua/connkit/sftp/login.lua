--- SFTP login: password, keyboard-interactive and private keys, and the
-- real cause when a private key cannot be used.
--
-- libssh2 reports a missing key file, a public key given as the private
-- one, a format it cannot read and a wrong passphrase with one generic
-- error. The key is therefore looked at first (core.ssh_key_info reads its
-- header, and opens PEM keys with OpenSSL), before anything is sent, and a
-- libssh2 failure is explained with those facts. Codes: "key_file" (cannot
-- be read), "key_format" (not a private key libssh2 can use),
-- "key_passphrase" (missing or wrong passphrase). Messages name the file
-- (or "private_key_data"), never the key or the passphrase.
-- @module connkit.sftp.login
local core = require "connkit.core"
local errors = require "connkit.errors"

local M = {}

-- Ciphers libssh2 can decrypt an OpenSSH-format key with.
local KEY_CIPHERS = {
  ["aes128-ctr"] = true, ["aes192-ctr"] = true, ["aes256-ctr"] = true,
  ["aes128-cbc"] = true, ["aes192-cbc"] = true, ["aes256-cbc"] = true,
  ["3des-cbc"] = true,
}

local FORMATS = { openssh = "OpenSSH", pem = "PEM", pkcs8 = "PKCS#8" }

local function key_name(creds)
  return creds.private_key and ("private key file " .. creds.private_key) or "private_key_data"
end

-- How to rewrite the key in a form libssh2 reads.
local function rewrite_hint(creds)
  if creds.private_key then
    return "; rewrite it in OpenSSH format with `ssh-keygen -p -f " .. creds.private_key .. "`"
  end
  return ""
end

--- Looks at the private key of `creds` (if any) before connecting.
-- @return the key facts (or nil without a key), or nil and an error
-- (key_file, key_format, key_passphrase) for a key that cannot work
-- @tparam table creds the account's credentials
function M.check_key(creds)
  local path, data = creds.private_key, creds.private_key_data
  if not (path or data) then return nil end
  local info, code, msg = core.ssh_key_info(path, data, creds.passphrase)
  if not info then return nil, errors.new(code, msg) end
  local name = key_name(creds)
  local function bad(m) return nil, errors.new("key_format", name .. " " .. m) end
  local kind = info.kind
  if kind == "public" then
    local private = path and path:match("^(.+)%.pub$")
    return bad("holds a public key, not a private one"
      .. (private and ("; give the private key file " .. private .. " (without .pub)") or ""))
  elseif kind == "putty" then
    return bad("is a PuTTY .ppk key, which libssh2 cannot read; convert it with"
      .. " `puttygen KEY.ppk -O private-openssh -o NEWFILE`")
  elseif kind == "certificate" then
    return bad("holds an X.509 certificate, not an SSH private key")
  elseif kind == "empty" then
    return bad("is empty")
  elseif kind ~= "private" then
    return bad("is not a private key (no -----BEGIN ... PRIVATE KEY----- block):"
      .. " give an OpenSSH or PEM private key")
  end
  if info.readable == false then
    return bad("is damaged: its " .. FORMATS[info.format] .. " block cannot be decoded")
  end
  if info.type == "sk" then
    return bad("is a FIDO security-key (sk-) key, which libssh2 cannot use")
  end
  if info.encrypted then
    if not creds.passphrase then
      return nil, errors.new("key_passphrase", name .. " is encrypted: give credentials.passphrase")
    end
    if info.cipher and not KEY_CIPHERS[info.cipher] then
      return bad("is encrypted with " .. info.cipher .. ", which libssh2 cannot decrypt; re-encrypt it with"
        .. " `ssh-keygen -p -Z aes256-ctr" .. (path and (" -f " .. path) or "") .. "`")
    end
    if info.passphrase_ok == false then
      return nil, errors.new("key_passphrase", "wrong passphrase for " .. name)
    end
  end
  return info
end

-- The real cause of libssh2's generic "cannot use this key" failure,
-- looked at again: the file may have changed since check_key.
local function key_failure(creds)
  local info, err = M.check_key(creds)
  if not info then return err end
  local name = key_name(creds)
  if info.encrypted then
    return errors.new("key_passphrase", "wrong passphrase for " .. name .. " (libssh2 could not decrypt it)")
  end
  return errors.new("key_format", ("libssh2 %s cannot read %s (a %s key in %s form)%s"):format(
    core.libssh2_version, name, info.type, FORMATS[info.format] or info.format, rewrite_hint(creds)))
end

local function has(list, m)
  return ("," .. list .. ","):find("," .. m .. ",", 1, true) ~= nil
end

--- Logs in with whatever the credentials allow and the server offers.
-- @param s the core session (host key already verified)
-- @tparam table creds the account's SFTP credentials
-- @tparam string where "host" or "[host]:port", for messages
-- @param key_info what check_key found (nil without a key)
-- @return true, or nil and an error
function M.login(s, creds, where, key_info)
  local user = creds.username
  local methods, code, msg = s:auth_list(user)
  if methods == true then return true end
  if not methods then return nil, errors.from_core(code, msg) end
  local tried = {}
  local function attempt(name, ok, c, m)
    tried[#tried + 1] = name
    if ok then return true end
    if c == "key_format" then return false, key_failure(creds) end
    if c ~= "auth" then return false, errors.from_core(c, m) end
    return false
  end
  local ok, err
  if key_info and has(methods, "publickey") then
    ok, err = attempt("publickey", s:auth_key(user, creds.private_key, creds.private_key_data, creds.passphrase))
    if ok then return true end
    if err then return nil, err end
  end
  if creds.password then
    if has(methods, "password") and s:is_open() then
      ok, err = attempt("password", s:auth_password(user, creds.password))
      if ok then return true end
      if err then return nil, err end
    end
    if has(methods, "keyboard-interactive") and s:is_open() then
      ok, err = attempt("keyboard-interactive", s:auth_kbdint(user, creds.password))
      if ok then return true end
      if err then return nil, err end
    end
  end
  local m2 = ("login refused for user '%s' on %s (server offers: %s; tried: %s)")
    :format(user, where, methods, #tried > 0 and table.concat(tried, ", ") or "nothing the credentials allow")
  if key_info and key_info.type == "rsa" then
    m2 = m2 .. "; RSA keys need the rsa-sha2-256/512 signatures that modern servers require, which"
      .. " libssh2 " .. core.libssh2_version .. " cannot make (it signs only with ssh-rsa/SHA-1):"
      .. " use an ed25519 or ECDSA key"
  end
  return nil, errors.new("auth", m2, { methods = methods })
end

return M
