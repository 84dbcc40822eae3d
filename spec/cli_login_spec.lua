-- The connkit command with OAuth 2.0 against oidc-provider: login through
-- the loopback redirect (--browser opens $BROWSER, here a curl that
-- follows the authorization into the command's listener; without it
-- nothing is opened), token (stdout is the token, and the resource server
-- takes it), status, revoke, a client-credentials login, and no secret
-- (client secret, refresh token) in any output.
local helpers = require "helpers"
local connkit = require "connkit"
local cli = require "support.cli"
local q = helpers.shell_quote

local op, t, def, ccdef, browser

local PUBLIC = [[
{ "name": "Test IdP", "key": "idp", "auth": "oauth2", "base_url": "{issuer}",
  "parameters": { "issuer": { "required": true } },
  "oauth2": { "grant_type": "authorization_code", "issuer": "{issuer}",
    "authorize_url": "{issuer}/auth", "token_url": "{issuer}/token", "revoke_url": "{issuer}/token/revocation",
    "client_id": "public-client", "client_auth": "none", "scope": "openid offline_access",
    "extra_params": { "resource": "{issuer}/api" }, "authorize_params": { "resource": "{issuer}/api" } } }
]]

-- a confidential client; its secret comes from the environment
local CC = [[
{ "name": "Test IdP cc", "key": "idpcc", "auth": "oauth2", "base_url": "{issuer}",
  "parameters": { "issuer": { "required": true } },
  "oauth2": { "grant_type": "client_credentials", "token_url": "{issuer}/token",
    "client_id": "cc-client", "client_auth": "basic" } }
]]

setup(function()
  op = helpers.peer("oidc")
  t = cli.new("cli-login")
  def = t:file("idp.json", PUBLIC)
  ccdef = t:file("idpcc.json", CC)
  -- the "browser": follows the authorization URL into the loopback listener
  browser = t:file("browser.sh", 'jar=$(mktemp)\ncurl -sS -g -L --max-redirs 15 --max-time 30 -c "$jar" -b "$jar"'
    .. ' -o /dev/null "$1"\nrm -f "$jar"\necho opened >> "$(dirname "$0")/browser.log"\n')
end)
teardown(function() if t then t:cleanup() end end)

-- whether the resource server takes `token`
local function api_status(token)
  local ok, out = helpers.run("curl -s -o /dev/null -w '%{http_code}' -H " .. q("Authorization: Bearer " .. token)
    .. " " .. q(op.endpoints.api))
  assert(ok, out)
  return tonumber(out)
end

-- the refresh token the store holds for the account (to look for it in outputs)
local function stored_refresh_token(id)
  local key = helpers.read_file(t.dir .. "/config/connkit/store.key"):gsub("%s+$", "")
  local st = connkit.store.file(t.dir .. "/data/connkit/idp", { key = key })
  local rec = st.get(id)
  return rec and rec.refresh_token
end

describe("connkit login (loopback)", function()
  local token, refresh

  it("with --browser, opens $BROWSER and finishes; the tokens go to the store", function()
    local r = t:run("login " .. q(def) .. " -a me -p issuer=" .. q(op.issuer) .. " --browser --timeout 30",
      { env = { BROWSER = helpers.clean_env .. "sh " .. browser } })
    assert.equal(0, r.status, r.stderr)
    assert.matches("Open this URL in a browser to authorize me:\nhttp://127%.0%.0%.1:%d+/auth%?", r.stderr)
    assert.matches("redirect_uri=http%%3A%%2F%%2F127%.0%.0%.1%%3A%d+%%2Fcallback", r.stderr)
    assert.matches("account me is authorized", r.stderr, 1, true)
    assert.equal("", r.stdout)
    for _ = 1, 100 do -- the browser ends a moment after the command
      if helpers.read_file(t.dir .. "/browser.log") then break end
      require("socket").sleep(0.05)
    end
    assert.matches("opened", helpers.read_file(t.dir .. "/browser.log") or "")
    refresh = stored_refresh_token("me")
    assert.is_string(refresh)
  end)

  it("token prints only the token, and the resource server takes it", function()
    local r = t:run("token " .. q(def) .. " -a me", { secret_stdout = true })
    assert.equal(0, r.status, r.stderr)
    token = r.stdout:match("^(%S+)\n$")
    assert.is_string(token, r.stdout)
    assert.equal("", r.stderr)
    assert.equal(200, api_status(token))
  end)

  it("status shows the account without secrets", function()
    local r = t:run("status " .. q(def) .. " -a me")
    assert.equal(0, r.status, r.stderr)
    assert.matches("^account: me\n", r.stdout)
    assert.matches("\nauthorized: true\n", r.stdout)
    assert.matches("\nhas_refresh_token: true\n", r.stdout)
  end)

  it("request sends the token", function()
    local r = t:run("request " .. q(def) .. " -a me /api/me")
    assert.equal(0, r.status, r.stderr)
    assert.matches('"sub"', r.stdout)
  end)

  it("revoke revokes at the server and empties the store", function()
    local r = t:run("revoke " .. q(def) .. " -a me")
    assert.equal(0, r.status, r.stderr)
    assert.matches("revoked", r.stderr)
    assert.is_false(op.introspect(token).active and op.introspect(refresh).active or false)
    r = t:run("status " .. q(def) .. " -a me")
    assert.matches("\nauthorized: false\n", r.stdout)
    r = t:run("token " .. q(def) .. " -a me")
    assert.equal(4, r.status)                    -- reauthorize: run connkit login
    assert.matches("not authorized", r.stderr)
    assert.equal("", r.stdout)
  end)

  it("without --browser, only prints the URL (and times out: exit 28)", function()
    helpers.execute("rm -f " .. q(t.dir .. "/browser.log"))
    local r = t:run("login " .. q(def) .. " -a nobody -p issuer=" .. q(op.issuer) .. " --timeout 1",
      { env = { BROWSER = helpers.clean_env .. "sh " .. browser } })
    assert.equal(28, r.status)
    assert.matches("http://127%.0%.0%.1:%d+/auth%?", r.stderr)
    assert.is_nil(helpers.read_file(t.dir .. "/browser.log"))
  end)

  it("never shows the refresh token or the access token but on token's stdout", function()
    assert.same({}, t:leaks({ token, refresh }))
  end)
end)

describe("connkit login --device", function()
  it("shows the code on stderr, polls until it is approved, and keeps the tokens", function()
    -- (no resource indicator: this peer takes none in the device flow)
    local ddef = t:file("device.json", [[{ "name": "Device", "key": "dev", "auth": "oauth2", "base_url": "{issuer}",
      "parameters": { "issuer": { "required": true } },
      "oauth2": { "grant_type": "authorization_code", "authorize_url": "{issuer}/auth", "token_url": "{issuer}/token",
        "device_authorization_url": "{issuer}/device/auth", "client_id": "public-client", "client_auth": "none",
        "scope": "openid offline_access" } }]])
    local proc = helpers.spawn("cli-device", t:command("login " .. q(ddef) .. " -a dev -p issuer=" .. q(op.issuer)
      .. " --device --timeout 60"))
    local code
    for _ = 1, 200 do
      code = (helpers.read_file(proc.log) or ""):match("enter the code (%S+)\n")
      if code then break end
      require("socket").sleep(0.05)
    end
    assert.is_string(code, helpers.read_file(proc.log))
    assert.is_true((op.approve(code)))
    for _ = 1, 300 do
      if not helpers.alive(proc.pid) then break end
      require("socket").sleep(0.05)
    end
    assert.is_false(helpers.alive(proc.pid))
    assert.matches("account dev is authorized", helpers.read_file(proc.log), 1, true)
    local r = t:run("status " .. q(ddef) .. " -a dev")
    assert.equal(0, r.status, r.stderr)
    assert.matches("\nauthorized: true\n", r.stdout)
    assert.matches("\nhas_refresh_token: true\n", r.stdout)
  end)
end)

describe("connkit login (client credentials)", function()
  local SECRET
  setup(function() SECRET = op.clients.cc.secret end)

  it("fetches a token with the client secret from the environment", function()
    local r = t:run("login " .. q(ccdef) .. " -p issuer=" .. q(op.issuer) .. " -c client_secret=@env:CC_SECRET",
      { env = { CC_SECRET = SECRET } })
    assert.equal(0, r.status, r.stderr)
    r = t:run("token " .. q(ccdef) .. " -c client_secret=@env:CC_SECRET", { env = { CC_SECRET = SECRET },
      secret_stdout = true })
    assert.equal(0, r.status, r.stderr)
    assert.equal(200, api_status(r.stdout:match("%S+")))
  end)

  it("a wrong secret: exit 67, one line, the secret not in it", function()
    local wrong = "wrong-secret-7c1d"
    local r = t:run("login " .. q(ccdef) .. " -a bad -p issuer=" .. q(op.issuer) .. " -c client_secret=@env:CC_SECRET",
      { env = { CC_SECRET = wrong } })
    assert.equal(67, r.status, r.stderr)
    assert.matches("^connkit: [^\n]+\n$", r.stderr)
    assert.same({}, t:leaks({ wrong, SECRET }))
  end)
end)
