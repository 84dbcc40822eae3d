-- Every static auth type and OAuth 2.0 client credentials through connkit's
-- public API in a worker's content phase, over the transport connkit picks
-- there. args.kind: api_token_header | api_token_query | basic |
-- custom_token | oauth2_cc; args.mark tags the request (the spec reads
-- what the peer received by it). E2E (peers, set in init_by_lua) names the
-- scripted peer and oidc-provider.
local connkit = require "connkit"

local function scripted(kind, extra)
  local def = {
    name = "E2E " .. kind, key = "e2e" .. kind:gsub("%W", ""), base_url = E2E.scripted,
  }
  for k, v in pairs(extra) do def[k] = v end
  return connkit.integration(def)
end

local KINDS = {
  api_token_header = function(mark)
    return scripted("api_token_header", {
      auth = "api_token", auth_token = { type = "header", name = "X-Api-Key", value = "{token}" },
    }):account { id = mark, credentials = { token = "tok-" .. mark } }, "/status?code=200&mark=" .. mark
  end,
  api_token_query = function(mark)
    return scripted("api_token_query", {
      auth = "api_token", auth_token = { type = "query", name = "api_key", value = "{token}" },
    }):account { id = mark, credentials = { token = "tok-" .. mark } }, "/status?code=200&mark=" .. mark
  end,
  basic = function(mark)
    return scripted("basic", { auth = "basic" }):account {
      id = mark, credentials = { username = "user-" .. mark, password = "pw:" .. mark },
    }, "/status?code=200&mark=" .. mark
  end,
  custom_token = function(mark)
    return scripted("custom_token", {
      auth = "custom_token",
      custom_token = {
        token_url = E2E.scripted .. "/login?ttl=600&mark=" .. mark, token_method = "POST",
        params = { user = "{username}", password = "{password}" },
        token_path = "data.token", expires_in_path = "data.ttl",
      },
    }):account {
      id = mark, credentials = { username = E2E.login.user, password = E2E.login.password },
    }, "/resource?mark=" .. mark
  end,
  oauth2_cc = function(mark)
    return connkit.integration {
      name = "E2E cc", key = "e2ecc", auth = "oauth2", base_url = E2E.oidc.issuer,
      oauth2 = {
        grant_type = "client_credentials", token_url = E2E.oidc.issuer .. "/token",
        client_id = E2E.oidc.cc.id, client_secret = E2E.oidc.cc.secret, scope = "api:read",
        extra_params = { resource = E2E.oidc.issuer .. "/api" },
      },
    }:account { id = mark }, "/api/me"
  end,
}

return function(args)
  local make = assert(KINDS[args.kind], "unknown kind " .. tostring(args.kind))
  local acct, path = make(args.mark)
  local out = { transport = connkit.transport(), calls = {} }
  for i = 1, tonumber(args.calls) or 1 do
    local res, err = acct:get(path, { timeout = 10 })
    out.calls[i] = {
      status = res and res.status,
      json = res and res:json(),
      err = err and { code = err.code, message = tostring(err) },
    }
  end
  return out
end
