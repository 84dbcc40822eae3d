-- No secret (token, password, secret parameter, client secret) may appear in
-- anything the module prints, returns as an error, raises, or shows through
-- tostring, including when requests fail.
local helpers = require "helpers"
local connkit = require "connkit"

local SECRETS = { "tok-S3CRET-one", "pw-S3CRET-two", "key-S3CRET-three", "cs-S3CRET-four" }

local function leaks(text)
  local core = require "connkit.core"
  for _, s in ipairs(SECRETS) do
    for _, form in ipairs({ s, core.escape(s, "query"), core.b64encode(s) }) do
      if text:find(form, 1, true) then return s end
    end
  end
  -- basic credentials travel as base64("user:password")
  if text:find(core.b64encode("alice:" .. SECRETS[2]), 1, true) then return "basic" end
  return nil
end

describe("secrets", function()
  it("never reach output, errors or tostring", function()
    local hb = helpers.peer("httpbin")
    local seen = {}
    local function keep(...)
      for i = 1, select("#", ...) do
        local v = select(i, ...)
        seen[#seen + 1] = tostring(v)
        if type(v) == "table" and v.message then seen[#seen + 1] = v.message end
      end
      return ...
    end
    local real_print, real_write = print, io.write
    print = function(...) keep(...) end
    io.write = function(...) keep(...) return io.stdout end
    local ok, err = pcall(function()
      local integ = connkit.integration {
        name = "Leaky", key = "leaky", auth = "api_token", base_url = "{base}",
        parameters = { base = { required = true }, apiKey = { secret = true } },
        auth_token = { type = "query", name = "token", value = "{token}" },
        request_parameters = { headers = { ["X-Api-Key"] = "{apiKey}" } },
      }
      keep(integ)
      local acct = integ:account { parameters = { base = hb.url, apiKey = SECRETS[3] }, credentials = { token = SECRETS[1] } }
      keep(acct, acct:status())
      local req = acct:prepare { url = "/anything", query = { a = 1 } }
      keep(req, req.method)
      keep(acct:get("/anything"))
      keep(acct:get("/delay/3", { timeout = 0.5 }))        -- timeout error
      keep(acct:get("http://127.0.0.1:" .. helpers.free_port() .. "/x?token=" .. SECRETS[1])) -- refused
      keep(acct:get("/anything/{missing}"))                -- template error
      keep(acct:get("/anything", { headers = { X = SECRETS[1] .. "\r\n" } })) -- CR/LF
      keep(pcall(integ.account, integ, { parameters = { base = hb.url, apiKey = "k" }, credentials = { token = SECRETS[1] .. "\n" } }))
      keep(pcall(integ.account, integ, { parameters = { base = hb.url }, credentials = { token = "x", bogus = SECRETS[1] } }))

      local basic = connkit.integration { name = "B", key = "b", auth = "basic", base_url = "{base}", parameters = { "base" } }
      local bacct = basic:account { parameters = { base = hb.url }, credentials = { username = "alice", password = SECRETS[2] } }
      keep(bacct, bacct:prepare { url = "/get" })
      keep(bacct:get("http://127.0.0.1:" .. helpers.free_port() .. "/"))
      keep(bacct:get("/basic-auth/alice/{p}", { vars = { p = SECRETS[2] }, timeout = 0.001 }))

      local oauth = connkit.integration {
        name = "O", key = "o", auth = "oauth2", base_url = "http://127.0.0.1:1",
        oauth2 = { grant_type = "client_credentials", token_url = "http://127.0.0.1:1/token",
                   client_id = "id", client_secret = SECRETS[4] },
      }
      keep(oauth, oauth:account {})
    end)
    print, io.write = real_print, real_write
    assert(ok, err)
    assert.is_true(#seen > 20)
    local all = table.concat(seen, "\n")
    assert.is_nil(leaks(all), "a secret leaked")
  end)

  it("are caught by the check itself (the check can fail)", function()
    assert.equal(SECRETS[1], leaks("x " .. SECRETS[1] .. " y"))
  end)
end)

describe("the secrets an account scrubs", function()
  it("stay bounded over many token changes, and keep the account's own", function()
    local acct = connkit.integration {
      name = "B", key = "bounded", auth = "api_token", base_url = "http://127.0.0.1:1",
      parameters = { apiKey = { secret = true } },
      request_parameters = { headers = { ["X-Key"] = "{apiKey}" } },
    }:account { parameters = { apiKey = "fixed-S3CRET-key" }, credentials = { token = "first-token-0" } }
    for i = 1, 1000 do acct:_set_token(("rotated-token-%04d"):format(i)) end
    assert.is_true(#acct._secrets <= 256)
    assert.equal("a *** b", acct:_redact("a fixed-S3CRET-key b"))
    assert.equal("a *** b", acct:_redact("a rotated-token-1000 b"))
  end)
end)
