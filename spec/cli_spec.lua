-- The connkit command (bin/connkit) as a process: check, bad usage, request
-- with every body kind against httpbin (what httpbin received is asserted),
-- -i, -o, exit statuses, token, credentials from the environment, a file
-- and a no-echo prompt (through a pseudo-terminal), and no secret in any
-- output. OAuth logins: spec/cli_login_spec.lua; SFTP: spec/cli_sftp_spec.lua.
local helpers = require "helpers"
local cjson = require "cjson"
local cli = require "support.cli"
local q = helpers.shell_quote

local hb, t, def
local TOKEN = "cli-api-token-3f9c2e71"

local DEF = [[
{ "name": "Httpbin", "key": "httpbin", "auth": "api_token", "base_url": "{base}",
  "parameters": { "base": { "required": true } },
  "auth_token": { "type": "header", "name": "Authorization", "value": "Bearer {token}" } }
]]

-- one line on stderr, starting with "connkit: "
local function one_line(s)
  assert.matches("^connkit: [^\n]+\n$", s)
end

setup(function()
  hb = helpers.peer("httpbin")
  t = cli.new("cli")
  def = t:file("httpbin.json", DEF)
  -- the first use makes the store key (and says so): done here, once
  local r = t:run("token " .. q(def) .. " -p base=" .. q(hb.url) .. " -c token=@env:TOK", { env = { TOK = TOKEN },
    secret_stdout = true })
  assert(r.status == 0, r.stderr)
end)
teardown(function() if t then t:cleanup() end end)

local ENV = { TOK = TOKEN }
local function request(args, opts)
  opts = opts or {}
  opts.env = opts.env or ENV
  opts.secret_stdout = true -- httpbin's echo of the request: the token is in it
  return t:run("request " .. q(def) .. " -p base=" .. q(hb.url) .. " -c token=@env:TOK " .. args, opts)
end

describe("connkit check", function()
  it("says ok for a good definition (exit 0)", function()
    local r = t:run("check " .. q(def))
    assert.equal(0, r.status)
    assert.matches("ok %(Httpbin, key httpbin, auth api_token%)", r.stdout)
    assert.equal("", r.stderr)
  end)

  it("names the field of a bad definition, in one line, exit 1", function()
    local bad = t:file("bad.json", (DEF:gsub('"header", "name"', '"heder", "name"')))
    local r = t:run("check " .. q(bad))
    assert.equal(1, r.status)
    one_line(r.stderr)
    assert.matches("auth_token.type", r.stderr, 1, true)
    assert.not_matches("traceback", r.stderr)
    local lua = t:file("bad.lua", 'return { name = "X", key = "x-y", auth = "none" }')
    r = t:run("check " .. q(lua))
    assert.equal(1, r.status)
    one_line(r.stderr)
    assert.matches("key", r.stderr, 1, true)
  end)
end)

describe("connkit usage", function()
  it("answers a mistake with one line on stderr and exit 1", function()
    for _, args in ipairs({ "", "bogus", "request", "request " .. q(def), "check a b",
                            "request " .. q(def) .. " /x --json 1 --data 2", "sftp " .. q(def) }) do
      local r = t:run(args)
      assert.equal(1, r.status, args)
      one_line(r.stderr)
      assert.equal("", r.stdout, args)
    end
  end)

  it("runs as a program from the checkout, with the interpreter whose build exists", function()
    local env = t:env_words({ CONNKIT_LUA = helpers.lua })
    local ok, out = helpers.run(env .. " " .. q(cli.bin) .. " check " .. q(def))
    assert.is_true(ok, out)
    assert.matches("ok %(Httpbin", out)
    ok, out = helpers.run(t:env_words({ CONNKIT_LUA = "no-such-lua" }) .. " " .. q(cli.bin) .. " --help")
    assert.is_false(ok)
    assert.matches("^connkit: connkit is not built in ", out)
  end)

  it("has --help for every command", function()
    for _, cmd in ipairs({ "", "check", "login", "token", "status", "revoke", "request", "sftp", "sftp x ls" }) do
      local r = t:run(cmd .. " --help")
      assert.equal(0, r.status, cmd)
      assert.matches("^Usage: connkit", r.stdout)
    end
  end)

  it("refuses a secret on the command line without repeating it", function()
    local r = t:run("token " .. q(def) .. " -p base=" .. q(hb.url) .. " -c token=" .. TOKEN)
    assert.equal(1, r.status)
    one_line(r.stderr)
    assert.matches("--credential token: a secret is never taken from the command line", r.stderr, 1, true)
    assert.is_nil(r.stderr:find(TOKEN, 1, true))
    -- a secret parameter too
    local sdef = t:file("secretparam.json", [[{ "name": "S", "key": "sp", "auth": "none", "base_url": "{base}",
      "parameters": { "base": {}, "apiKey": { "secret": true } },
      "request_parameters": { "headers": { "X-Key": "{apiKey}" } } }]])
    r = t:run("request " .. q(sdef) .. " -p base=" .. q(hb.url) .. " -p apiKey=" .. TOKEN .. " /get")
    assert.equal(1, r.status)
    assert.matches("--param apiKey: a secret", r.stderr, 1, true)
    assert.is_nil(r.stderr:find(TOKEN, 1, true))
  end)

  it("says how to give a missing credential or parameter", function()
    local r = t:run("request " .. q(def) .. " -a fresh -p base=" .. q(hb.url) .. " /get")
    assert.equal(1, r.status)
    one_line(r.stderr)
    assert.matches("missing credentials: token (give --credential", r.stderr, 1, true)
    r = t:run("request " .. q(def) .. " -a fresh2 -c token=@env:TOK /get", { env = ENV })
    assert.equal(1, r.status)
    assert.matches("missing required parameters: base (give --param", r.stderr, 1, true)
  end)

  it("names an unset variable or an unreadable file", function()
    local r = t:run("token " .. q(def) .. " -p base=x -c token=@env:CONNKIT_NOT_SET_ANYWHERE")
    assert.equal(1, r.status)
    assert.matches("CONNKIT_NOT_SET_ANYWHERE is not set", r.stderr, 1, true)
    r = t:run("token " .. q(def) .. " -p base=x -c token=@file:/nonexistent/tok")
    assert.equal(1, r.status)
    assert.matches("cannot read /nonexistent/tok", r.stderr, 1, true)
    -- no terminal to ask on
    r = t:run("token " .. q(def) .. " -p base=x -c token")
    assert.equal(1, r.status)
    assert.matches("no terminal to ask on", r.stderr, 1, true)
  end)
end)

describe("connkit request", function()
  it("sends a JSON body with the account's token; exit 0", function()
    local r = request("/anything/json -q a=1 -q a=2 -H 'X-Extra: yes' --json '{\"n\": 12345678901234567}'")
    assert.equal(0, r.status, r.stderr)
    local got = cjson.decode(r.stdout)                 -- what httpbin received
    assert.equal("POST", got.method)
    assert.equal("Bearer " .. TOKEN, got.headers.Authorization)
    assert.equal("application/json", got.headers["Content-Type"])
    assert.equal("yes", got.headers["X-Extra"])
    assert.equal('{"n": 12345678901234567}', got.data) -- as written, not re-encoded
    assert.same({ "1", "2" }, got.args.a)
    assert.equal("", r.stderr)
  end)

  it("sends --data form-encoded, -X picks the method, @FILE reads a file", function()
    local r = request("/anything/data -X PUT --data 'a=1&b=two'")
    assert.equal(0, r.status, r.stderr)
    local got = cjson.decode(r.stdout)
    assert.equal("PUT", got.method)
    assert.same({ a = "1", b = "two" }, got.form)
    local body = t:file("body.txt", "raw body\n")
    r = request("/anything/raw -H 'Content-Type: text/plain' --data @" .. q(body))
    got = cjson.decode(r.stdout)
    assert.equal("raw body\n", got.data)
    assert.equal("text/plain", got.headers["Content-Type"])
  end)

  it("refuses --json that is not JSON (exit 1)", function()
    local r = request("/anything --json '{nope'")
    assert.equal(1, r.status)
    one_line(r.stderr)
    assert.matches("--json: not JSON", r.stderr, 1, true)
  end)

  it("sends --form as multipart", function()
    local file = t:file("upload.csv", "a,b\n1,2\n")
    local r = request("/anything/form --form note=hello --form file=@" .. q(file))
    assert.equal(0, r.status, r.stderr)
    local got = cjson.decode(r.stdout)
    assert.equal("hello", got.form.note)
    assert.equal("a,b\n1,2\n", got.files.file)
  end)

  it("follows pagination with --paginate: one body per line, cursors as the server gave them", function()
    local sp = helpers.peer("scripted")
    local pdef = t:file("pages.json", cjson.encode {
      name = "Pages", key = "pages", auth = "api_token", base_url = sp.url,
      auth_token = { type = "header", name = "Authorization", value = "Bearer {token}" },
      pagination = { type = "cursor", cursor = "meta.next_cursor", param = "cursor", items = "data" },
    })
    local r = t:run("request " .. q(pdef) .. " -c token=@env:TOK " .. q("/pages/cursor?n=25&mark=cli") .. " --paginate",
      { env = ENV })
    assert.equal(0, r.status, r.stderr)
    local lines = {}
    for line in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = cjson.decode(line) end
    assert.equal(3, #lines)                                -- 25 items, 10 a page
    assert.equal(1, lines[1].data[1].id)
    assert.equal(25, lines[3].data[5].id)
    assert.equal("", r.stderr)
    -- what the server saw: three pages, each after the first with the cursor it gave
    local seen = sp.requests("/pages/cursor")
    local mine = {}
    for _, req in ipairs(seen) do
      if req.query.mark == "cli" then mine[#mine + 1] = req end
    end
    assert.equal(3, #mine)
    assert.is_nil(mine[1].query.cursor)
    assert.equal(lines[1].meta.next_cursor, mine[2].query.cursor)
    assert.equal(lines[2].meta.next_cursor, mine[3].query.cursor)
    assert.equal("Bearer " .. TOKEN, mine[2].headers.authorization)
  end)

  it("prints the status line and headers with -i", function()
    local r = request("-i /response-headers?X-Marker=seen")
    assert.equal(0, r.status, r.stderr)
    assert.matches("^HTTP[^\r\n]* 200\r\n", r.stdout)
    assert.matches("\r\nx%-marker: seen\r\n", r.stdout)
    assert.matches("\r\n\r\n{", r.stdout)
  end)

  it("exits 22 for a reply that is not 2xx, and says the status on stderr", function()
    local r = request("/status/404")
    assert.equal(22, r.status)
    one_line(r.stderr)
    assert.matches("answered 404", r.stderr, 1, true)
    r = request("-X POST /status/503")
    assert.equal(22, r.status)
  end)

  it("exits with the documented status for connkit errors", function()
    local port = helpers.free_port()
    local r = t:run("request " .. q(def) .. " -a refused -p base=http://127.0.0.1:" .. port .. " -c token=@env:TOK /get",
      { env = ENV })
    assert.equal(7, r.status)              -- connect, as curl
    one_line(r.stderr)
    r = request("/delay/3 --timeout 0.5")
    assert.equal(28, r.status)             -- timeout, as curl
  end)

  it("writes the body to -o FILE, and keeps the old file when the request fails", function()
    local out = t.dir .. "/out.json"
    local r = request("/anything/to-file -o " .. q(out))
    assert.equal(0, r.status, r.stderr)
    assert.equal("", r.stdout)
    local got = cjson.decode(helpers.read_file(out))
    assert.equal("/anything/to-file", got.url:match("//[^/]+(/.*)$"))
    assert.is_nil(helpers.read_file(out .. ".part"))
    local port = helpers.free_port()
    r = t:run("request " .. q(def) .. " -a refused2 -p base=http://127.0.0.1:" .. port
      .. " -c token=@env:TOK /get -o " .. q(out), { env = ENV })
    assert.equal(7, r.status)
    assert.same(got, cjson.decode(helpers.read_file(out)))   -- the old file, untouched
    r = request("/status/404 -o " .. q(out))                 -- not 2xx: exit 22, file untouched
    assert.equal(22, r.status)
    assert.same(got, cjson.decode(helpers.read_file(out)))
    assert.is_nil(helpers.read_file(out .. ".part"))
    r = request("/get -o " .. q(t.dir .. "/no/such/dir/out.json"))  -- cannot write: 23, as curl
    assert.equal(23, r.status)
    one_line(r.stderr)
  end)

  it("remembers the account's parameters for the next command", function()
    local r = t:run("request " .. q(def) .. " -a remembered -p base=" .. q(hb.url) .. " -c token=@env:TOK /get",
      { env = ENV, secret_stdout = true })
    assert.equal(0, r.status, r.stderr)
    r = t:run("request " .. q(def) .. " -a remembered -c token=@env:TOK /anything/again",
      { env = ENV, secret_stdout = true })
    assert.equal(0, r.status, r.stderr)
    assert.equal("Bearer " .. TOKEN, cjson.decode(r.stdout).headers.Authorization)
  end)

  it("pretty-prints JSON on a terminal", function()
    local transcript = t:tty("request " .. q(def) .. " -p base=" .. q(hb.url) .. " -c token=@env:TOK /anything/pretty",
      { env = ENV, delay = 0, linger = 0 })
    t.outputs[#t.outputs] = nil -- httpbin's echo holds the token
    assert.matches('{\n  "args": {},\n  "data": "",\n', (transcript:gsub("\r", "")), 1, true)
  end)
end)

describe("connkit token", function()
  it("prints the token and nothing else; it works against httpbin", function()
    local r = t:run("token " .. q(def) .. " -p base=" .. q(hb.url) .. " -c token=@env:TOK", { env = ENV, secret_stdout = true })
    assert.equal(0, r.status, r.stderr)
    assert.equal(TOKEN .. "\n", r.stdout)
    assert.equal("", r.stderr)
    local ok, out = helpers.run("curl -s -H " .. q("Authorization: Bearer " .. r.stdout:gsub("\n", "")) .. " " .. hb.url .. "/bearer")
    assert.is_true(ok)
    assert.equal(TOKEN, cjson.decode(out).token)
  end)

  it("reads a credential from @file:", function()
    local f = t:file("tok.txt", TOKEN .. "\n")
    local r = t:run("token " .. q(def) .. " -p base=" .. q(hb.url) .. " -c token=@file:" .. q(f), { secret_stdout = true })
    assert.equal(0, r.status, r.stderr)
    assert.equal(TOKEN .. "\n", r.stdout)
  end)
end)

describe("the credential prompt", function()
  it("asks without echo on a terminal and restores the terminal", function()
    local typed = "typed-secret-81d2"
    local out = t.dir .. "/prompted.json"
    local transcript, status = t:tty("request " .. q(def) .. " -p base=" .. q(hb.url)
      .. " -c token -o " .. q(out) .. " /anything/prompted; stty -a | grep -o -- ' -\\?echo ' | head -1",
      { input = typed .. "\n", delay = 1.5 })
    assert.equal(0, status, transcript)
    assert.matches("token: ", transcript, 1, true)
    assert.is_nil(transcript:find(typed, 1, true))               -- never echoed
    assert.matches(" echo ", transcript, 1, true)                -- echo is back on afterwards
    assert.equal("Bearer " .. typed, cjson.decode(helpers.read_file(out)).headers.Authorization) -- httpbin got it
  end)
end)

describe("the credential prompt, interrupted", function()
  it("restores the terminal on Ctrl-C and exits 130", function()
    local transcript = t:tty("request " .. q(def) .. " -p base=" .. q(hb.url)
      .. " -c token /anything/never; echo status=$?; stty -a | grep -o -- ' -\\?echo ' | head -1",
      { input = "\3", delay = 1.5 })
    assert.matches("token: ", transcript, 1, true)
    assert.matches("connkit: interrupted", transcript, 1, true)
    assert.matches("status=130", transcript, 1, true)
    assert.matches(" echo ", transcript, 1, true)                -- not " -echo "
  end)
end)

describe("the store", function()
  it("makes its key file once, 0600, and says where", function()
    local s = cli.new("cli-key")
    local r = s:run("request " .. q(def) .. " -p base=" .. q(hb.url) .. " -c token=@env:TOK /get", { env = ENV })
    assert.equal(0, r.status, r.stderr)
    local keyfile = s.dir .. "/config/connkit/store.key"
    assert.matches("made a new store key in " .. keyfile:gsub("%p", "%%%0"), r.stderr)
    local ok, mode = helpers.run("stat -c %a " .. q(keyfile))
    assert.is_true(ok)
    assert.equal("600", mode:match("%d+"))
    r = s:run("request " .. q(def) .. " -c token=@env:TOK /get", { env = ENV })
    assert.equal(0, r.status, r.stderr)
    assert.equal("", r.stderr)                                  -- said once
    s:cleanup()
  end)
end)

describe("the command's output", function()
  it("never holds a secret (but token's stdout)", function()
    assert.same({}, t:leaks({ TOKEN, "typed-secret-81d2" }))
  end)
end)
