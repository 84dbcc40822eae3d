--- OAuth 2.0: the `oauth2` block of a definition. The grant flows
-- (authorization code with PKCE, client credentials, refresh, revoke, device
-- flow, loopback login) build on this.
-- @module connkit.oauth2
local check = require "connkit.check"

local M = {}

local FIELDS = {
  grant_type = true, token_url = true, token_method = true, authorize_url = true,
  revoke_url = true, device_authorization_url = true, issuer = true, scope = true,
  client_id = true, client_secret = true, client_auth = true, pkce = true,
  extra_params = true, redirect_uri = true,
}

--- Validates the `oauth2` block; returns it normalized, templates compiled.
function M.check_definition(b, fail, env)
  local ctx = env.ctx
  check.known_fields(ctx, b, "oauth2", FIELDS)
  local out = {
    grant_type = check.string(ctx, "oauth2.grant_type", b.grant_type,
      { default = "authorization_code", one_of = { "authorization_code", "client_credentials" } }),
    token_method = check.string(ctx, "oauth2.token_method", b.token_method, { default = "POST", one_of = { "POST", "GET" } }),
    client_auth = check.string(ctx, "oauth2.client_auth", b.client_auth, { default = "basic", one_of = { "basic", "post", "none" } }),
    redirect_uri = check.string(ctx, "oauth2.redirect_uri", b.redirect_uri),
  }
  out.token_url = env.template("oauth2.token_url", check.string(ctx, "oauth2.token_url", b.token_url, { required = true }), "url")
  if out.grant_type == "authorization_code" then
    out.authorize_url = env.template("oauth2.authorize_url",
      check.string(ctx, "oauth2.authorize_url", b.authorize_url, { required = true }), "url")
  elseif b.authorize_url ~= nil then
    out.authorize_url = env.template("oauth2.authorize_url", b.authorize_url, "url")
  end
  for _, f in ipairs({ "revoke_url", "device_authorization_url" }) do
    if b[f] ~= nil then out[f] = env.template("oauth2." .. f, check.string(ctx, "oauth2." .. f, b[f]), "url") end
  end
  for _, f in ipairs({ "issuer", "scope", "client_id", "client_secret" }) do
    if b[f] ~= nil then out[f] = env.template("oauth2." .. f, check.string(ctx, "oauth2." .. f, b[f], { empty = f == "scope" }), "raw") end
  end
  out.pkce = check.boolean(ctx, "oauth2.pkce", b.pkce, out.grant_type == "authorization_code")
  out.extra_params = {}
  if b.extra_params ~= nil then
    check.table(ctx, "oauth2.extra_params", b.extra_params)
    for k, v in pairs(b.extra_params) do
      if type(k) ~= "string" then fail("oauth2.extra_params", "must be named by strings") end
      out.extra_params[#out.extra_params + 1] = { name = k, template = env.template("oauth2.extra_params." .. k, v, "raw") }
    end
    table.sort(out.extra_params, function(x, y) return x.name < y.name end)
  end
  if out.client_auth ~= "none" and out.client_secret == nil and out.grant_type == "client_credentials" then
    -- the account may still give client_secret in its credentials
    out.secret_from_account = true
  end
  return out
end

return M
