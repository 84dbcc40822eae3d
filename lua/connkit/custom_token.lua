--- Custom token endpoints: the `custom_token` block of a definition (a login
-- URL that answers with a token somewhere in its JSON).
-- @module connkit.custom_token
local check = require "connkit.check"

local M = {}

local FIELDS = {
  token_url = true, token_method = true, params = true, headers = true, format = true,
  token_path = true, expires_in_path = true, ttl = true,
}

local PATH = "^[%w_%-]+[%.%w_%-]*$"

--- Validates the `custom_token` block; returns it normalized. Placeholders in
-- `params` and `headers` that are not parameters name credentials the
-- account must give (`credential_names`).
function M.check_definition(b, fail, env)
  local ctx = env.ctx
  check.known_fields(ctx, b, "custom_token", FIELDS)
  local out = {
    token_method = check.string(ctx, "custom_token.token_method", b.token_method, { default = "POST", one_of = { "POST", "GET" } }),
    format = check.string(ctx, "custom_token.format", b.format, { default = "form", one_of = { "form", "json" } }),
    token_path = check.string(ctx, "custom_token.token_path", b.token_path,
      { default = "access_token", pattern = PATH, pattern_msg = "must be a dotted path such as data.token" }),
    expires_in_path = check.string(ctx, "custom_token.expires_in_path", b.expires_in_path,
      { pattern = PATH, pattern_msg = "must be a dotted path such as data.ttl" }),
    ttl = check.number(ctx, "custom_token.ttl", b.ttl, { min = 1 }),
    params = {}, headers = {}, credential_names = {},
  }
  out.token_url = env.template("custom_token.token_url", check.string(ctx, "custom_token.token_url", b.token_url, { required = true }), "url")
  for _, part in ipairs({ "params", "headers" }) do
    local t = b[part]
    if t ~= nil then
      check.table(ctx, "custom_token." .. part, t)
      for k, v in pairs(t) do
        local field = "custom_token." .. part .. "." .. tostring(k)
        if type(k) ~= "string" then fail("custom_token." .. part, "must be named by strings") end
        if part == "headers" and not k:find(check.HEADER_NAME) then fail(field, "is not a valid header name") end
        local tpl, used = env.template(field, v, part == "headers" and "header" or "raw", { any = true })
        for _, n in ipairs(used) do
          if not env.names[n] and n ~= "token" then out.credential_names[n] = true end
        end
        out[part][#out[part] + 1] = { name = k, template = tpl }
      end
      table.sort(out[part], function(x, y) return x.name < y.name end)
    end
  end
  return out
end

return M
