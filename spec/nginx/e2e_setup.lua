--- Setup shared by spec/nginx_e2e_spec.lua (loaded in the busted process,
-- not a scenario): the peers' configuration for init_by_lua, the servers
-- and locations of the main instance, a certificate for another name, and
-- a look at what the scripted peer received.
local helpers = require "helpers"
local cjson = require "cjson"

local M = {}

-- a test key for the file store shared by the spec and the worker (32 bytes)
M.STORE_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

-- The authorization-code integration, as Lua source: the spec logs in with
-- it outside nginx, the worker uses the stored tokens with the same one.
M.AUTHCODE_DEFINITION = [[
return function(cfg) return {
  name = "E2E authcode", key = "e2eauthcode", auth = "oauth2", base_url = "{issuer}",
  parameters = { issuer = { required = true } },
  oauth2 = {
    grant_type = "authorization_code",
    authorize_url = "{issuer}/auth", token_url = "{issuer}/token",
    scope = "openid offline_access api:read",
    client_id = cfg.oidc.basic.id, client_secret = cfg.oidc.basic.secret, client_auth = "basic",
    extra_params = { resource = "{issuer}/api" }, authorize_params = { resource = "{issuer}/api" },
  },
} end
]]

-- init_by_lua (after require "connkit", before the fork): the peers for the
-- scenarios (E2E), and one real request through connkit there.
function M.init_code(cfg)
  return ([==[
    E2E = require("cjson").decode(%q)
    E2E.authcode_definition = function() return assert(loadstring(E2E.authcode_source))()(E2E) end
    do
      local connkit = require "connkit"
      local acct = connkit.integration {
        name = "E2E init", key = "e2einit", auth = "none", base_url = E2E.scripted,
      }:account {}
      local transport = connkit.transport()
      local res, err = acct:get("/status?code=200&mark=init&instance=" .. E2E.instance, { timeout = 10 })
      E2E.init_result = { transport = transport, status = res and res.status, err = err and err.code }
    end
  ]==]):format(cjson.encode(cfg))
end

function M.config(scripted, op, instance)
  return {
    instance = instance,
    scripted = scripted.url, hang = scripted.hang_url, login = scripted.login,
    oidc = { issuer = op.issuer, cc = op.clients.cc, basic = op.clients.basic },
    store_key = M.STORE_KEY, authcode_source = M.AUTHCODE_DEFINITION,
  }
end

-- The scripted peer's records of `path` carrying query mark=`mark`.
function M.received(scripted, path, mark)
  local out = {}
  for _, r in ipairs(scripted.requests(path)) do
    if r.query.mark == mark then out[#out + 1] = r end
  end
  return out
end

local marks = 0
function M.new_mark(tag)
  marks = marks + 1
  return ("%s%d%d"):format(tag, marks, math.random(100000, 999999))
end

-- the redirecting server of the main instance: /to?url=U answers 302 U;
-- /echo answers the request's headers as JSON
M.REDIRECTOR = [[
    location = /to { content_by_lua_block { ngx.redirect(ngx.var.arg_url and ngx.unescape_uri(ngx.var.arg_url) or "/", 302) } }
    location = /echo {
      default_type application/json;
      content_by_lua_block { ngx.say(require("cjson").encode({ headers = ngx.req.get_headers(), uri = ngx.var.request_uri })) }
    }
]]

-- locations whose filter and log phases try a request (no cosockets there)
M.PHASE_LOCATIONS = [[
    location = /e2e/log_phase {
      default_type text/plain;
      content_by_lua_block { ngx.say("ok") }
      log_by_lua_block { require("nginx.e2e_phase_probe")("phaselog") }
    }
    location = /e2e/header_phase {
      default_type text/plain;
      content_by_lua_block { ngx.say("ok") }
      header_filter_by_lua_block { require("nginx.e2e_phase_probe")("phaseheader") }
    }
]]

-- A CA of the spec's own (trusted by the main instance) and a certificate
-- it signed for another name than the one the client connects to
-- (wrong.test, not 127.0.0.1). Returns the directory.
function M.wrong_name_certificate()
  local dir = helpers.tmpdir("e2e-tls")
  local ok, out = helpers.run(("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    .. " -days 2 -subj '/CN=connkit e2e other CA' -keyout ca.key -out ca.pem 2>/dev/null"
    .. " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=wrong.test'"
    .. " -keyout wrong.key -out wrong.csr 2>/dev/null"
    .. " && printf 'subjectAltName=DNS:wrong.test\\n' > san.ext"
    .. " && openssl x509 -req -in wrong.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
    .. " -extfile san.ext -out wrong.pem 2>/dev/null"):format(helpers.shell_quote(dir)))
  assert(ok, out)
  return dir
end

return M
