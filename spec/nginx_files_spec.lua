-- Files in and out over the ngx transport (inside nginx): output streamed
-- to a file (a 50 MB download within 20 MB of the worker's peak memory,
-- the old file kept on a cut transfer, a non-2xx reply and max_body),
-- on_data, multipart bodies equal byte for byte to the curl transport's
-- (but for the boundary) as the scripted peer received them, and res.url,
-- res.time, res.http_version. Scenario: spec/nginx/files_request.lua.
local helpers = require "helpers"
local openresty = require "peers.openresty"
local cjson = require "cjson"

local exists, file_sha = helpers.exists, helpers.file_sha256

describe("files in and out over the ngx transport", function()
  local p, sp, dir

  setup(function()
    sp = helpers.peer("scripted")
    p = openresty.start(helpers, {}) -- a fresh worker: its peak memory is the download's
    dir = helpers.tmpdir("ngx-files")
    helpers.execute("chmod 0777 " .. helpers.shell_quote(dir)) -- (nginx's workers may run as another user)
  end)

  teardown(function()
    if p then p.stop() end
  end)

  local function request(opts, via)
    return p:run("files_request", { base = sp.url, opts = cjson.encode(opts), via = via or "ngx" })
  end

  it("streams a 50 MB download to a file with the worker's peak memory under 20 MB above where it was", function()
    local out = dir .. "/big.bin"
    local warm = request { url = "/files/bytes?n=1000", output = dir .. "/warm.bin" }
    assert.equal("ngx", warm.transport)
    local r = request { url = "/files/bytes?n=52428800", output = out, timeout = 120 }
    assert.equal(200, r.status, r.message)
    assert.equal(52428800, r.size)
    assert.is_false(r.has_body)
    assert.equal(r.sha256, file_sha(out))
    assert.is_false(exists(out .. ".part"))
    local grew = (r.hwm_after - r.hwm_before) / 1024
    io.stdout:write(("\n[files] ngx transport, 50 MB download to a file: the worker's peak memory %.1f MB above"
      .. " where it was (VmHWM %d -> %d kB)\n"):format(grew, r.hwm_before, r.hwm_after))
    assert.is_true(grew < 20, ("peak grew by %.1f MB"):format(grew))
  end)

  it("keeps the old file and leaves no .part on a cut transfer, a non-2xx reply and max_body", function()
    local out = dir .. "/old.bin"
    helpers.write_file(out, "old content")
    local r = request { url = "/files/bytes?n=2000000&cut=300000", output = out }
    assert.equal("network", r.code)
    r = request { url = "/files/bytes?n=1000&status=500", output = out }
    assert.equal(500, r.status)
    assert.equal(1000, #r.body)
    r = request { url = "/files/bytes?n=3000000&chunked=1", output = out, max_body = 1000000 }
    assert.equal("too_large", r.code)
    assert.equal("old content", helpers.read_file(out))
    assert.is_false(exists(out .. ".part"))
  end)

  it("starts the file anew on a retry", function()
    local out = dir .. "/retry.bin"
    local key = "ngx-retry-" .. os.time() .. "-" .. math.random(1e6)
    local r = request { url = "/files/bytes?n=1500000&cut=700000&key=" .. key, output = out,
      retry = { max = 2, base = 0.01 } }
    assert.equal(200, r.status, r.message)
    assert.equal(2, r.attempts)
    assert.equal(r.sha256, file_sha(out))
  end)

  it("hands every byte to on_data in bounded pieces, and stops when it says so", function()
    local r = request { url = "/files/bytes?n=3000000&chunked=1", on_data = "collect" }
    assert.equal(200, r.status, r.message)
    assert.is_false(r.has_body)
    assert.equal(3000000, r.size)
    assert.equal(r.sha256, r.data_sha256)
    assert.is_true(r.biggest <= 65536)
    r = request { url = "/files/bytes?n=3000000", on_data = "false" }
    assert.equal("aborted", r.code)
    assert.matches("on_data returned false", r.message, 1, true)
    r = request { url = "/files/bytes?n=3000000", on_data = "raise" }
    assert.equal("aborted", r.code)
    assert.matches("on_data raised an error: disk full", r.message, 1, true)
  end)

  it("sends the same multipart body as the curl transport, byte for byte but the boundary", function()
    local bin = dir .. "/upload.bin"
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    helpers.write_file(bin, table.concat(bytes):rep(1000))
    helpers.write_file(dir .. "/notes.txt", "plain text\n")
    local parts = {
      { name = "note", value = "h\195\169llo \"quoted\"" },
      { name = "file", file = bin },
      { name = "typed", file = bin, filename = "r\"eport.csv", type = "text/csv" },
      { name = "text", file = dir .. "/notes.txt" },
      { name = "named", value = "x", filename = "a.txt" },
    }
    local got = {}
    for _, via in ipairs({ "ngx", "curl" }) do
      local r = request({ method = "POST", url = "/files/upload", multipart = parts }, via)
      assert.equal(200, r.status, r.message)
      assert.equal(via, r.transport)
      got[via] = cjson.decode(r.body)
    end
    local n, c = got.ngx, got.curl
    assert.equal(c.length, n.length)
    assert.equal(tonumber(n.content_length), n.length)
    assert.equal(c.normalized_sha256, n.normalized_sha256)
    assert.equal(5, #n.parts)
    assert.same(c.parts, n.parts)
    assert.equal(256000, n.parts[2].length)
    -- the request went out with the account's token, over the ngx transport
    assert.equal("Bearer ngx-files-token", sp.last("/files/upload").headers.authorization)
  end)

  it("sets res.url, res.time, res.http_version as the curl transport does", function()
    for _, via in ipairs({ "ngx", "curl" }) do
      local r = request({ url = "/files/bytes?n=10" }, via)
      assert.equal(sp.url .. "/files/bytes?n=10", r.url)
      assert.is_true(r.time > 0)
      assert.equal("1.1", r.http_version)
      assert.equal(10, r.size)
    end
  end)
end)
