-- Fuzz target: token replies through the real token path (Lua:
-- token_endpoint.lua parse_reply/token_record, custom_token.lua's token
-- path; cjson; the account's secret scrubbing and store).
-- The parsing is Lua, so the target runs that Lua: an account of a real
-- integration fetches its token with account:token(), and the one seam is
-- the transfer: the curl transport's perform and start are replaced by ones
-- that answer every call
-- with the reply the input describes, so nothing goes on the network.
-- Input: byte 1 picks the integration (OAuth client credentials, custom
-- token with JSON and with form replies and a few token paths), byte 2 the
-- status, byte 3 the content type; the rest is the body.
-- Oracles: no Lua error escapes (a reply is run-time input: it gets
-- nil, err); a failure has a code of [a-z_]+ (never "internal") and a
-- message without the client secret or the password, whole or a prefix of
-- 6+ characters (unless the reply has that prefix on its own); a token handed out is a non-empty string fit for a header
-- (no CR, LF, NUL) and its record can be stored (finite expires_at, JSON).
local connkit = require "connkit"
local core = require "connkit.core"
local curl_transport = require "connkit.transport.curl"
local encode_json = require("connkit.json").encode
local cjson = require "cjson.safe"

local SECRET = "Sx9-client-SECRET-q7Zp"
local PASSWORD = "Pw4-user-PASSWORD-k2Lm"
local BASE = "https://fuzz.invalid"

local reply -- what the engine answers, set per input
-- (a started transfer is over at once: done() and result() are all the
-- token path asks of it)
local done = { done = function() return true end, result = function() return reply end }
curl_transport.perform = function() return reply end
curl_transport.start = function() return done end

local function custom(n, format, path, expires)
  return connkit.integration {
    name = "Fuzz custom " .. n, key = "fuzzcustom" .. n, auth = "custom_token",
    base_url = BASE,
    custom_token = {
      token_url = BASE .. "/login", format = format,
      params = { user = "{username}", password = "{password}" },
      token_path = path, expires_in_path = expires,
    },
  }
end

local INTEGRATIONS = {
  connkit.integration {
    name = "Fuzz OAuth", key = "fuzzoauth", auth = "oauth2", base_url = BASE,
    oauth2 = { grant_type = "client_credentials", token_url = BASE .. "/token",
      client_id = "fuzz-client", client_secret = SECRET },
  },
  custom(1, "json", "data.token", "data.ttl"),
  custom(2, "form", "access_token", "expires_in"),
  custom(3, "json", "a.1.b", nil),
}
local CREDENTIALS = { username = "fuzz-user", password = PASSWORD }
local STATUS = { 200, 200, 200, 201, 400, 401, 403, 500, 302, 204 }
local CTYPES = { "application/json", "application/json; charset=utf-8",
  "application/x-www-form-urlencoded", "text/plain", "text/html", "" }

-- The texts of a reply a message may quote: the body, form-decoded, and
-- every string of its JSON; each with the whole secrets taken out. A prefix
-- of a secret that the reply has on its own is not a leak.
local function own_texts(body, secrets)
  local texts = { body, (body:gsub("%+", " "):gsub("%%(%x%x)", function(h)
    return string.char(tonumber(h, 16)) end)) }
  local function collect(v, depth)
    if type(v) == "string" then texts[#texts + 1] = v
    elseif type(v) == "table" and depth < 20 then
      for k, x in pairs(v) do collect(k, depth + 1); collect(x, depth + 1) end
    end
  end
  collect(cjson.decode(body), 0)
  for i, t in ipairs(texts) do
    for _, secret in ipairs(secrets) do
      t = t:gsub(secret:gsub("%p", "%%%0"), "")
    end
    texts[i] = t
  end
  return texts
end

-- (secrets: the account's own; another integration's secret in a reply is
-- only text to this account)
local function assert_no_secret(msg, body, secrets)
  local texts
  for _, s in ipairs(secrets) do
    for len = #s, 6, -1 do
      local p = s:sub(1, len)
      if msg:find(p, 1, true) then
        texts = texts or own_texts(body, secrets)
        local own = false
        for _, t in ipairs(texts) do own = own or t:find(p, 1, true) ~= nil end
        assert(own, "a secret (or its first " .. len .. " characters) is in the message: " .. msg)
      end
    end
  end
end

return function(data)
  if #data < 3 then return end
  local integ = INTEGRATIONS[data:byte(1) % #INTEGRATIONS + 1]
  local ctype = CTYPES[data:byte(3) % #CTYPES + 1]
  reply = {
    status = STATUS[data:byte(2) % #STATUS + 1],
    headers = { ["content-type"] = ctype ~= "" and ctype or nil },
    body = data:sub(4),
  }
  local acct = integ:account {
    credentials = integ.auth == "custom_token" and CREDENTIALS or nil,
  }
  local tok, err = acct:token()
  if tok == nil then
    assert(type(err) == "table", "no error with a nil token")
    assert(type(err.code) == "string" and err.code:find("^[a-z_]+$") and err.code ~= "internal",
      "bad error code " .. tostring(err.code))
    assert(type(err.message) == "string", "the error has no message")
    local secrets = integ.auth == "custom_token" and { PASSWORD } or { SECRET }
    assert_no_secret(err.message, reply.body, secrets)
    assert_no_secret(tostring(err), reply.body, secrets)
    return
  end
  assert(type(tok) == "string" and tok ~= "", "the token is not a non-empty string")
  assert(core.header_safe(tok), "the token handed out holds CR, LF or NUL: unusable in a header")
  local rec = acct.store.get(acct.id)
  assert(rec and rec.access_token == tok, "the token handed out is not the stored one")
  local e = rec.expires_at
  assert(type(e) == "number" and e == e and e < math.huge, "expires_at is not finite: " .. tostring(e))
  assert(pcall(encode_json, rec), "the record cannot be encoded for a store")
end
