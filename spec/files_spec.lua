-- Files in and out over the curl transport: output (a reply streamed to a
-- file), on_data (streamed to a function), multipart uploads, and res.url,
-- res.time, res.http_version. Bodies come from the scripted peer's
-- /files/bytes (a fixed pattern with its sha256 in X-Sha256) and uploads
-- are checked byte for byte by its /files/upload (spec/scripted/routes/files.js)
-- and parsed by httpbin.
local helpers = require "helpers"
local connkit = require "connkit"
local core = require "connkit.core"

local exists, file_sha, file_size = helpers.exists, helpers.file_sha256, helpers.file_size

describe("files in and out (curl transport)", function()
  local sp, hb, acct, dir

  setup(function()
    sp = helpers.peer("scripted")
    hb = helpers.peer("httpbin")
    dir = helpers.tmpdir("files")
    acct = connkit.integration { name = "Files", key = "files", auth = "api_token", base_url = sp.url,
      allowed_origins = { hb.url } }
      :account { credentials = { token = "files-token-123" } }
  end)

  describe("output", function()
    it("streams a 50 MB download to a file with its peak memory under 20 MB above the baseline", function()
      local out = dir .. "/big.bin"
      local script = dir .. "/download.lua"
      helpers.write_file(script, ([[
        local connkit = require "connkit"
        local function hwm()
          for line in io.lines("/proc/self/status") do
            local kb = line:match("^VmHWM:%%s+(%%d+) kB")
            if kb then return tonumber(kb) end
          end
        end
        local acct = connkit.integration { name = "F", key = "f", auth = "none", base_url = %q }:account {}
        assert(acct:get("/files/bytes?n=1000", { output = %q .. ".warm" })) -- the engine, TLS-free pool, buffers
        local base = hwm()
        local res, err = acct:get("/files/bytes?n=52428800", { output = %q, timeout = 120 })
        local peak = hwm()
        if not res then print("FAILED " .. tostring(err)) os.exit(1) end
        print(("status=%%d size=%%d body=%%s sha=%%s base_kb=%%d peak_kb=%%d"):format(res.status, res.size,
          tostring(res.body), res.headers["x-sha256"], base, peak))
      ]]):format(sp.url, out, out))
      local env = ""
      for k, v in pairs(helpers.child_env()) do env = env .. " " .. k .. "=" .. helpers.shell_quote(v) end
      local ok, got = helpers.run("env" .. env .. " " .. helpers.lua .. " " .. helpers.shell_quote(script))
      assert(ok, got)
      local status, size, body, sha, base, peak = got:match(
        "status=(%d+) size=(%d+) body=(%S+) sha=(%x+) base_kb=(%d+) peak_kb=(%d+)")
      assert(status, got)
      assert.equal("200", status)
      assert.equal(52428800, tonumber(size))
      assert.equal("nil", body)
      assert.equal(52428800, file_size(out))
      assert.equal(sha, file_sha(out)) -- what the peer served, byte for byte
      assert.is_false(exists(out .. ".part"))
      local grew_mb = (tonumber(peak) - tonumber(base)) / 1024
      io.stdout:write(("\n[files] 50 MB download to a file: peak memory %.1f MB above the baseline (VmHWM %d -> %d kB)\n")
        :format(grew_mb, tonumber(base), tonumber(peak)))
      assert.is_true(grew_mb < 20, ("peak grew by %.1f MB"):format(grew_mb))
    end)

    it("keeps the old file and leaves no .part when the transfer is cut", function()
      local out = dir .. "/cut.bin"
      helpers.write_file(out, "old content")
      local res, err = acct:get("/files/bytes?n=2000000&cut=300000", { output = out })
      assert.is_nil(res)
      assert.equal("network", err.code)
      assert.equal("old content", helpers.read_file(out))
      assert.is_false(exists(out .. ".part"))
    end)

    it("keeps the old file on a non-2xx reply, whose body is in res.body", function()
      local out = dir .. "/status.bin"
      helpers.write_file(out, "old content")
      local res = assert(acct:get("/files/bytes?n=1000&status=500", { output = out }))
      assert.equal(500, res.status)
      assert.equal(1000, #res.body)
      assert.equal(1000, res.size)
      assert.equal("old content", helpers.read_file(out))
      assert.is_false(exists(out .. ".part"))
    end)

    it("applies max_body: too_large, the old file kept, no .part", function()
      local out = dir .. "/limit.bin"
      helpers.write_file(out, "old content")
      local res, err = acct:get("/files/bytes?n=3000000&chunked=1", { output = out, max_body = 1000000 })
      assert.is_nil(res)
      assert.equal("too_large", err.code)
      assert.equal("old content", helpers.read_file(out))
      assert.is_false(exists(out .. ".part"))
    end)

    it("starts the file anew on a retry, never appends", function()
      local out = dir .. "/retry.bin"
      local key = "retry-" .. os.time() .. "-" .. math.random(1e6)
      local res = assert(acct:get("/files/bytes?n=1500000&cut=700000&key=" .. key,
        { output = out, retry = { max = 2, base = 0.01 } }))
      assert.equal(2, res.attempts)
      assert.equal(1500000, res.size)
      assert.equal(1500000, file_size(out))
      assert.equal(res.headers["x-sha256"], file_sha(out))
    end)

    it("writes the file of the last hop after redirects, with res.url the final URL", function()
      local out = dir .. "/redirected.bin"
      local target = sp.url .. "/files/bytes?n=40000"
      local res = assert(acct:get(hb.url .. "/redirect-to?status_code=302&url=" .. target:gsub("[^%w]", function(c)
        return ("%%%02X"):format(c:byte()) end), { output = out, follow = true }))
      assert.equal(200, res.status)
      assert.equal(1, res.redirects)
      assert.equal(target, res.url)
      assert.equal(40000, file_size(out))
      assert.equal(res.headers["x-sha256"], file_sha(out))
    end)

    it("decodes a gzip body into the file", function()
      local out = dir .. "/gzip.bin"
      local res = assert(acct:get("/files/bytes?n=3000000&gzip=1", { output = out }))
      assert.equal("gzip", res.headers["content-encoding"])
      assert.equal(3000000, res.size)
      assert.equal(res.headers["x-sha256"], file_sha(out))
    end)

    it("writes an empty file for an empty 2xx body", function()
      local out = dir .. "/empty.bin"
      helpers.write_file(out, "old content")
      local res = assert(acct:get("/files/bytes?n=0", { output = out }))
      assert.equal(0, res.size)
      assert.equal("", helpers.read_file(out))
    end)

    it("fails with code io when the file cannot be written, nothing left behind", function()
      local res, err = acct:get("/files/bytes?n=1000", { output = dir .. "/no/such/dir/x.bin" })
      assert.is_nil(res)
      assert.equal("io", err.code)
      assert.matches("no/such/dir/x.bin.part", err.message, 1, true)
    end)

    it("works in connkit.all and in req:start() handles", function()
      local reqs = {}
      for i = 1, 3 do
        reqs[i] = assert(acct:prepare { url = "/files/bytes?n=" .. (200000 * i), output = dir .. "/all" .. i .. ".bin" })
      end
      local results = connkit.all(reqs, { concurrency = 3 })
      for i = 1, 3 do
        local res = assert(results[i].res, results[i].err)
        assert.equal(200000 * i, file_size(dir .. "/all" .. i .. ".bin"))
        assert.equal(res.headers["x-sha256"], file_sha(dir .. "/all" .. i .. ".bin"))
      end
      local h = assert(acct:prepare { url = "/files/bytes?n=123456", output = dir .. "/handle.bin" }):start()
      while not h:done() do connkit.poll(0.05) end
      local res = assert(h:result())
      assert.equal(123456, file_size(dir .. "/handle.bin"))
      assert.equal(res.headers["x-sha256"], file_sha(dir .. "/handle.bin"))
    end)

    it("refuses output with on_data, naming both", function()
      assert.has_error(function() acct:get("/x", { output = "a", on_data = function() end }) end,
        "request: give only one of the options output and on_data")
      assert.has_error(function() acct:get("/x", { output = "" }) end)
    end)
  end)

  describe("on_data", function()
    it("receives every byte, in bounded pieces", function()
      local parts, calls, biggest = {}, 0, 0
      local res = assert(acct:get("/files/bytes?n=5000000", { on_data = function(chunk)
        calls = calls + 1
        if #chunk > biggest then biggest = #chunk end
        parts[#parts + 1] = chunk
      end }))
      assert.is_nil(res.body)
      assert.equal(5000000, res.size)
      local all = table.concat(parts)
      assert.equal(5000000, #all)
      assert.equal(res.headers["x-sha256"], core.hex(core.sha256(all)))
      assert.is_true(calls > 5)
      assert.is_true(biggest <= 256 * 1024, "a piece of " .. biggest .. " bytes")
    end)

    it("stops the transfer when the function returns false", function()
      local calls = 0
      local res, err = acct:get("/files/bytes?n=20000000", { on_data = function()
        calls = calls + 1
        return false
      end })
      assert.is_nil(res)
      assert.equal("aborted", err.code)
      assert.matches("on_data returned false", err.message, 1, true)
      assert.equal(1, calls)
    end)

    it("stops the transfer when the function raises, with its message", function()
      local res, err = acct:get("/files/bytes?n=2000000", { on_data = function() error("disk full", 0) end })
      assert.is_nil(res)
      assert.equal("aborted", err.code)
      assert.matches("on_data raised an error: disk full", err.message, 1, true)
    end)

    it("gets no call for a non-2xx reply, whose body is in res.body", function()
      local calls = 0
      local res = assert(acct:get("/files/bytes?n=500&status=404", { on_data = function() calls = calls + 1 end }))
      assert.equal(404, res.status)
      assert.equal(500, #res.body)
      assert.equal(0, calls)
    end)

    it("streams several transfers at once in connkit.all", function()
      local got, reqs = {}, {}
      for i = 1, 3 do
        got[i] = {}
        reqs[i] = assert(acct:prepare { url = "/files/bytes?n=" .. (700000 + i), on_data = function(c)
          got[i][#got[i] + 1] = c
        end })
      end
      local results = connkit.all(reqs)
      for i = 1, 3 do
        local res = assert(results[i].res, results[i].err)
        assert.equal(res.headers["x-sha256"], core.hex(core.sha256(table.concat(got[i]))))
      end
    end)
  end)

  describe("multipart", function()
    local bin
    setup(function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      bin = dir .. "/upload.bin"
      helpers.write_file(bin, table.concat(bytes):rep(300)) -- 76800 bytes, every value
    end)

    it("uploads values and files that the server sees byte for byte", function()
      local res = assert(acct:post("/files/upload", { multipart = {
        { name = "note", value = "h\195\169llo\r\nworld" },
        { name = "file", file = bin, type = "application/octet-stream" },
        { name = "renamed", file = bin, filename = "report.csv", type = "text/csv" },
      } }))
      local got = res:json()
      assert.matches("^multipart/form%-data; boundary=", got.content_type)
      assert.equal(tonumber(got.content_length), got.length)
      assert.equal(3, #got.parts)
      assert.same({ "note", "h\195\169llo\r\nworld" }, { got.parts[1].name, got.parts[1].value })
      assert.is_nil(got.parts[1].filename)
      local want = core.hex(core.sha256(helpers.read_file(bin)))
      assert.equal("file", got.parts[2].name)
      assert.equal("upload.bin", got.parts[2].filename)
      assert.equal("application/octet-stream", got.parts[2].type)
      assert.equal(76800, got.parts[2].length)
      assert.equal(want, got.parts[2].sha256)
      assert.same({ "renamed", "report.csv", "text/csv", want },
        { got.parts[3].name, got.parts[3].filename, got.parts[3].type, got.parts[3].sha256 })
      -- the request went out with the account's token
      assert.equal("Bearer files-token-123", sp.last("/files/upload").headers.authorization)
    end)

    it("is parsed by httpbin as form fields and files", function()
      local small = dir .. "/small.txt"
      helpers.write_file(small, "a,b\n1,2\n")
      local got = assert(acct:post(hb.url .. "/anything", { multipart = {
        { name = "note", value = 42 },
        { name = "file", file = small, type = "text/csv" },
      } })):json()
      assert.equal("42", got.form.note)
      assert.equal("a,b\n1,2\n", got.files.file)
      assert.equal("Bearer files-token-123", got.headers.Authorization)
    end)

    it("works with PUT and in connkit.all", function()
      local reqs = {}
      for i = 1, 2 do
        reqs[i] = assert(acct:prepare { method = "PUT", url = "/files/upload",
          multipart = { { name = "n", value = tostring(i) }, { name = "f", file = bin } } })
      end
      local results = connkit.all(reqs)
      for i = 1, 2 do
        local got = assert(results[i].res, results[i].err):json()
        assert.equal(tostring(i), got.parts[1].value)
        assert.equal(76800, got.parts[2].length)
      end
    end)

    it("names the part and field of a mistake", function()
      assert.has_error(function() acct:post("/x", { multipart = { { value = "x" } } }) end,
        "request: option 'multipart[1].name' is required")
      assert.has_error(function() acct:post("/x", { multipart = { { name = "a", value = "x" }, { name = "b" } } }) end,
        "request: option 'multipart[2]' needs one of value and file")
      assert.has_error(function() acct:post("/x", { multipart = { { name = "a", value = "x", file = bin } } }) end,
        "request: option 'multipart[1]' needs one of value and file")
      assert.has_error(function() acct:post("/x", { multipart = { { name = "a", value = {} } } }) end,
        "request: option 'multipart[1].value' must be a string or a number, not a table")
      assert.has_error(function() acct:post("/x", { multipart = { { name = "a\r\nX: y", value = "x" } } }) end,
        "request: option 'multipart[1].name' holds CR, LF or NUL")
      assert.has_error(function() acct:post("/x", { multipart = { { name = "a", value = "x", size = 1 } } }) end,
        "request: option 'multipart[1]' has an unknown field 'size' (name, value, file, filename, type)")
      assert.has_error(function() acct:post("/x", { body = "x", multipart = { { name = "a", value = "x" } } }) end,
        "request: give only one of the options json, form, body and multipart")
      assert.has_error(function() acct:get("/x", { multipart = { { name = "a", value = "x" } } }) end,
        "request: option 'multipart' needs a method with a body (POST, PUT, ...), not GET")
    end)

    it("returns code io naming the part for a file that cannot be read", function()
      local res, err = acct:post("/files/upload", { multipart = {
        { name = "a", value = "x" }, { name = "b", file = dir .. "/missing.csv" } } })
      assert.is_nil(res)
      assert.equal("io", err.code)
      assert.matches("multipart[2].file cannot be read", err.message, 1, true)
      assert.matches("missing.csv", err.message, 1, true)
      res, err = acct:post("/files/upload", { multipart = { { name = "d", file = dir } } })
      assert.is_nil(res)
      assert.equal("io", err.code)
    end)
  end)

  describe("reply facts", function()
    it("sets res.url, res.time and res.http_version", function()
      local res = assert(acct:get(hb.url .. "/redirect/2", { follow = true }))
      assert.equal(200, res.status)
      assert.equal(hb.url .. "/get", res.url)
      assert.is_true(res.time > 0)
      assert.equal("1.1", res.http_version)
      res = assert(acct:get("/files/bytes?n=10"))
      assert.equal(sp.url .. "/files/bytes?n=10", res.url)
      assert.equal(10, res.size)
      assert.equal(10, #res.body)
    end)

    it("masks a token sent in the query in res.url", function()
      local q = connkit.integration { name = "Q", key = "q", auth = "api_token", base_url = hb.url,
        auth_token = { type = "query", name = "api_key", value = "{token}" } }
        :account { credentials = { token = "query-secret-999" } }
      local res = assert(q:get("/get?x=1"))
      assert.equal("query-secret-999", res:json().args.api_key) -- the peer got it
      assert.equal(hb.url .. "/get?x=1&api_key=***", res.url)
    end)
  end)

  describe("examples/files.lua", function()
    it("runs against the peers", function()
      local ok, out = helpers.run_example("files.lua", {}, { FILES_BASE_URL = sp.url, FILES_DIR = dir })
      assert(ok, out)
      assert.matches("saved 1048576 bytes", out, 1, true)
      assert.matches("uploaded 2 parts", out, 1, true)
    end)
  end)
end)
