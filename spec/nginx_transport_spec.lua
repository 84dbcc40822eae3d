-- The ngx transport (lua/connkit/transport/ngx.lua) inside Debian's nginx
-- with its Lua module: requests as the peers received them, every body and
-- reply kind, gzip, limits, timeouts, TLS against a private CA, names
-- resolved by nginx's `resolver` (a small DNS responder made for the run),
-- keep-alive pools, transfers in light threads, and the same reply fields
-- and error codes as the curl transport for the same request in the same
-- worker. Scenarios: spec/nginx/transport_*.lua.
local helpers = require "helpers"
local openresty = require "peers.openresty"
local cjson = require "cjson"

-- A DNS responder on UDP: A 127.0.0.1 for the names below, NXDOMAIN for
-- the rest (nginx's resolver reads no /etc/hosts).
local DNS = [==[
import socket, struct, sys
names = {b"localhost", b"wrong.test"}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    q, addr = s.recvfrom(512)
    if len(q) < 12:
        continue
    i, labels = 12, []
    while i < len(q) and q[i] != 0:
        labels.append(q[i + 1:i + 1 + q[i]])
        i += 1 + q[i]
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    question = q[12:i + 5]
    name = b".".join(labels).lower()
    known = name in names
    answer = b""
    if known and qtype == 1:
        answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([127, 0, 0, 1])
    flags = 0x8180 if known else 0x8183
    head = q[:2] + struct.pack(">HHHHH", flags, 1, 1 if answer else 0, 0, 0)
    s.sendto(head + question + answer, addr)
]==]

local function start_dns()
  local dir = helpers.tmpdir("dns")
  helpers.write_file(dir .. "/dns.py", DNS)
  local proc = helpers.spawn("dns", "/usr/bin/python3 -u " .. helpers.shell_quote(dir .. "/dns.py"))
  for _ = 1, 100 do
    local port = tonumber((helpers.read_file(proc.log) or ""):match("^(%d+)"))
    if port then return proc, port end
    require("socket").sleep(0.05)
  end
  helpers.stop(proc)
  error("the DNS responder did not start: " .. tostring(helpers.read_file(proc.log)))
end

-- replies the peers will not give: written on the raw request socket
local function raw(path, text)
  return ([[
    location = %s { content_by_lua_block { local s = ngx.req.socket(true) s:send(%q) } }
]]):format(path, text)
end

local RAW_SERVER = raw("/until-close", "HTTP/1.1 200 OK\r\nX-Kind: close-delimited\r\n\r\nbody until the peer closes")
  .. raw("/interim", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
    .. "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal")
  .. raw("/cut-body", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
  .. raw("/cut-head", "HTTP/1.1 200 OK\r\nX-Half: yes\r\n")
  .. raw("/empty", "")
  .. raw("/garbage", "SSH-2.0-not-http\r\n\r\n")
  .. raw("/chunked-trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
  .. [[
    location = /once-per-connection {
      content_by_lua_block {
        local s = ngx.req.socket(true)
        s:send("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce")
        s:settimeout(5000)
        s:receive("*l") -- the next request on this connection: closed unanswered
      }
    }
    location = /stall { content_by_lua_block { ngx.sleep(5) ngx.say("late") } }
    location = /slow { content_by_lua_block { ngx.sleep(0.5) ngx.say("slow") } }
    location = /moved { return 302 ../elsewhere/x?y=1; }
]]

-- phases without cosockets, each reporting what transport_phase.lua saw
local PHASE_LOCATIONS = [[
    location = /phase/set {
      set_by_lua_block $choice { return require("nginx.transport_phase")() }
      return 200 "$choice";
    }
    location = /phase/filters {
      header_filter_by_lua_block { ngx.header["X-Choice"] = require("nginx.transport_phase")() }
      log_by_lua_block { ngx.shared.phases:set("log", require("nginx.transport_phase")()) }
      return 200 "filtered";
    }
    location = /phase/log { content_by_lua_block { ngx.print(ngx.shared.phases:get("log")) } }
]]

describe("the ngx transport inside nginx", function()
  local p, raw_peer, httpbin, echo, dns_proc

  setup(function()
    httpbin = helpers.peer("httpbin")
    echo = helpers.peer("nginx") -- its CA is not trusted by this nginx
    local dns_port
    dns_proc, dns_port = start_dns()
    p = openresty.start(helpers, {
      http = ("  resolver 127.0.0.1:%d ipv6=off valid=1s;\n  resolver_timeout 2s;"):format(dns_port),
      shared_dicts = { phases = "64k" },
      init = [[ CONNKIT_INIT_TRANSPORT = require("connkit").transport() ]],
      locations = PHASE_LOCATIONS,
    })
    -- another nginx: the curl transport blocks its worker, so a peer in the
    -- same nginx would never answer it
    raw_peer = openresty.start(helpers, { locations = RAW_SERVER })
  end)

  teardown(function()
    if p then p.stop() end
    if raw_peer then raw_peer.stop() end
    helpers.stop(dns_proc)
  end)

  -- runs one spec; via "both" also through the curl transport
  local function perform(spec, via)
    spec.timeout = spec.timeout or 10
    return p:run("transport_perform", { spec = cjson.encode(spec), via = via })
  end

  -- a body that echoes the request, with the curl transport's longer
  -- Accept-Encoding made the ngx transport's
  local function same_echo(body)
    return (body:gsub("deflate, gzip, br, zstd", "deflate, gzip"))
  end

  local function received(r)
    assert.equal(200, r.status, r.message)
    return cjson.decode(r.body)
  end

  describe("sends", function()
    it("Host, Accept and the caller's lines; 'Name;' as an empty value, 'Name:' removes", function()
      local r = perform({ method = "GET", url = httpbin.url .. "/headers?x=1#frag", header_lines = {
        "X-Region: eu", "X-Empty;", "Accept:", "X-Removed:", "Authorization: Bearer t" } }).ngx
      local h = received(r).headers
      assert.equal("127.0.0.1:" .. httpbin.port, h.Host)
      assert.equal("eu", h["X-Region"])
      assert.equal("", h["X-Empty"])
      assert.is_nil(h.Accept) -- a header the transport adds, removed by "Accept:"
      assert.is_nil(h["X-Removed"])
      assert.equal("Bearer t", h.Authorization)
      assert.equal("deflate, gzip", h["Accept-Encoding"])
    end)

    it("the request target as written, without the fragment", function()
      local r = perform({ method = "GET", url = echo.url .. "/echo/a%2Fb?q=%20x&y#frag" }).ngx
      assert.equal(200, r.status, r.message)
      assert.matches("^GET /echo/a%%2Fb%?q=%%20x&y\n", r.body)
    end)

    it("a Host line of the caller's instead of its own", function()
      local h = received(perform({ method = "GET", url = httpbin.url .. "/headers",
        header_lines = { "Host: api.example" } }).ngx).headers
      assert.equal("api.example", h.Host)
    end)

    it("every body kind as libcurl does (same fields at the peer for both transports)", function()
      local cases = {
        { method = "POST", body = '{"a":1}', header_lines = { "Content-Type: application/json", "Expect:" } },
        { method = "POST", body = "a=1&b=two", header_lines = { "Content-Type: application/x-www-form-urlencoded", "Expect:" } },
        { method = "POST", body = "raw bytes", header_lines = { "Content-Type:", "Expect:" } },
        { method = "POST", body = "", header_lines = { "Expect:" } },
        { method = "POST" },
        { method = "PUT", body = "put body", header_lines = { "Content-Type: text/plain", "Expect:" } },
        { method = "PATCH", body = '{"p":true}', header_lines = { "Content-Type: application/json" } },
        { method = "DELETE" },
        { method = "DELETE", body = "gone" },
        { method = "GET" },
        { method = "POST", body = "with own length", header_lines = { "Content-Length: 15" } },
      }
      for i, spec in ipairs(cases) do
        spec.url = httpbin.url .. "/anything/" .. i
        local r = perform(spec, "both")
        local got, want = received(r.ngx), received(r.curl)
        -- the curl transport also offers br and zstd; the ngx one decodes gzip and deflate
        assert.equal("deflate, gzip", got.headers["Accept-Encoding"])
        got.headers["Accept-Encoding"], want.headers["Accept-Encoding"] = nil, nil
        assert.same(want, got, "case " .. i .. " " .. spec.method)
        if next(got.form) == nil then
          assert.equal(spec.body or "", got.data, "case " .. i) -- (httpbin parses a form into form)
        end
      end
    end)

    it("no Content-Length and no body for a GET or HEAD without one", function()
      local h = received(perform({ method = "GET", url = httpbin.url .. "/anything" }).ngx).headers
      assert.is_nil(h["Content-Length"])
      assert.is_nil(h["Content-Type"])
    end)

    it("refuses a header line with CR or LF (code header, nothing sent)", function()
      local r = perform({ method = "GET", url = httpbin.url .. "/get", header_lines = { "X-A: 1\r\nX-B: 2" } }).ngx
      assert.equal("header", r.code)
    end)
  end)

  describe("reads", function()
    it("Content-Length and chunked replies, with the same fields as the curl transport", function()
      for _, path in ipairs({ "/bytes/3000?seed=1", "/stream-bytes/5000?chunk_size=700&seed=2",
        "/stream/3", "/status/418", "/response-headers?X-Multi=a&X-Multi=b", "/html" }) do
        local r = perform({ method = "GET", url = httpbin.url .. path }, "both")
        assert.equal(r.curl.status, r.ngx.status, path)
        assert.equal(same_echo(r.curl.body), r.ngx.body, path)
        r.curl.headers.date, r.ngx.headers.date = nil, nil
        assert.same(r.curl.headers, r.ngx.headers, path)
        assert.equal("connkit.response", r.ngx.response_mt)
      end
    end)

    it("a body that ends when the peer closes, interim 1xx replies, trailers", function()
      local base = raw_peer.url
      local r = perform({ method = "GET", url = base .. "/until-close" }, "both")
      assert.equal("body until the peer closes", r.ngx.body)
      assert.equal("close-delimited", r.ngx.headers["x-kind"])
      r = perform({ method = "GET", url = base .. "/interim" }, "both")
      assert.equal(200, r.ngx.status)
      assert.equal("final", r.ngx.body)
      assert.equal("yes", r.ngx.headers["x-final"])
      assert.is_nil(r.ngx.headers.link) -- the 103's header is not the reply's
      assert.same(r.curl.headers, r.ngx.headers)
      r = perform({ method = "GET", url = base .. "/chunked-trailer" }, "both")
      assert.equal("hello world", r.ngx.body)
      assert.equal(r.curl.body, r.ngx.body)
    end)

    it("HEAD, 204 and 304 without a body", function()
      for _, c in ipairs({ { "HEAD", "/get" }, { "GET", "/status/204" }, { "GET", "/status/304" } }) do
        local r = perform({ method = c[1], url = httpbin.url .. c[2], timeout = 5 }, "both")
        assert.equal(r.curl.status, r.ngx.status)
        assert.equal("", r.ngx.body)
        assert.is_true(r.ngx.elapsed < 2, c[2]) -- no wait for a body that never comes
      end
    end)

    it("gzip and deflate decoded; the raw body and no Accept-Encoding with decompress = false", function()
      for _, path in ipairs({ "/gzip", "/deflate" }) do
        local r = perform({ method = "GET", url = httpbin.url .. path }, "both")
        assert.equal(same_echo(r.curl.body), r.ngx.body)
        assert.is_true(cjson.decode(r.ngx.body)[path:sub(2) .. "ped"] or cjson.decode(r.ngx.body).deflated)
      end
      local r = perform({ method = "GET", url = httpbin.url .. "/gzip", decompress = false }).ngx
      assert.equal("1f8b", r.body_head)
      r = perform({ method = "GET", url = httpbin.url .. "/headers", decompress = false }).ngx
      assert.is_nil(cjson.decode(r.body).headers["Accept-Encoding"])
    end)

    it("the redirect URL of a 3xx, resolved as libcurl does", function()
      local r = perform({ method = "GET", url = raw_peer.url .. "/moved" }, "both")
      assert.equal(302, r.ngx.status)
      assert.equal(r.curl.redirect_url, r.ngx.redirect_url)
      assert.equal(raw_peer.url .. "/elsewhere/x?y=1", r.ngx.redirect_url)
    end)
  end)

  describe("fails with the curl transport's codes", function()
    it("too_large past max_body: Content-Length, chunked, and the decoded size of gzip", function()
      for _, path in ipairs({ "/bytes/1000", "/stream-bytes/1000?chunk_size=100" }) do
        local r = perform({ method = "GET", url = httpbin.url .. path, max_body = 999 }, "both")
        assert.equal("too_large", r.ngx.code, path)
        assert.equal(r.curl.message, r.ngx.message)
      end
      assert.equal(200, perform({ method = "GET", url = httpbin.url .. "/bytes/1000", max_body = 1000 }).ngx.status)
      local whole = perform({ method = "GET", url = httpbin.url .. "/gzip" }).ngx.body_len
      local r = perform({ method = "GET", url = httpbin.url .. "/gzip", max_body = whole - 1 }, "both")
      assert.equal("too_large", r.ngx.code)
      assert.equal(r.curl.code, r.ngx.code)
      assert.equal(200, perform({ method = "GET", url = httpbin.url .. "/gzip", max_body = whole }).ngx.status)
    end)

    it("connect when nothing listens", function()
      local r = perform({ method = "GET", url = "http://127.0.0.1:" .. helpers.free_port() .. "/" }, "both")
      assert.equal("connect", r.ngx.code)
      assert.equal(r.curl.code, r.ngx.code)
      assert.matches("Failed to connect to 127.0.0.1 port %d+", r.ngx.message)
    end)

    it("timeout within the request's timeout when the peer stalls", function()
      local r = perform({ method = "GET", url = raw_peer.url .. "/stall", timeout = 0.5 }, "both")
      assert.equal("timeout", r.ngx.code)
      assert.equal(r.curl.code, r.ngx.code)
      assert.is_true(r.ngx.elapsed >= 0.45 and r.ngx.elapsed < 1.5, tostring(r.ngx.elapsed))
    end)

    it("network and protocol for broken replies, as the curl transport", function()
      for path, code in pairs({ ["/cut-body"] = "network", ["/cut-head"] = "network", ["/empty"] = "network",
        ["/garbage"] = "protocol" }) do
        local r = perform({ method = "GET", url = raw_peer.url .. path, timeout = 5 }, "both")
        assert.equal(code, r.ngx.code, path .. ": " .. tostring(r.ngx.message))
        assert.equal(r.curl.code, r.ngx.code, path)
      end
    end)

    it("url for what is not an http(s) URL", function()
      local r = perform({ method = "GET", url = "ftp://127.0.0.1/x" }, "both")
      assert.equal("url", r.ngx.code)
      assert.equal(r.curl.code, r.ngx.code)
    end)

    it("dns for a name nginx's resolver does not know, naming the resolver directive", function()
      local r = perform({ method = "GET", url = "http://nx.test:" .. httpbin.port .. "/get" }).ngx
      assert.equal("dns", r.code)
      assert.matches("nx.test", r.message, 1, true)
      assert.matches("resolver", r.message, 1, true)
    end)
  end)

  describe("TLS", function()
    it("verifies a private CA's certificate named by lua_ssl_trusted_certificate, by name", function()
      local r = perform({ method = "GET", url = ("https://localhost:%d/ping"):format(p.https_port) }).ngx
      assert.equal(200, r.status, r.message)
      assert.equal("pong\n", r.body)
      r = perform({ method = "GET", url = p.https_url .. "/ping" }).ngx -- an IP literal: no SNI
      assert.equal(200, r.status, r.message)
    end)

    it("tls for a certificate of another name", function()
      local r = perform({ method = "GET", url = ("https://wrong.test:%d/ping"):format(p.https_port) }).ngx
      assert.equal("tls", r.code)
      assert.matches("host mismatch", r.message, 1, true)
    end)

    it("tls for a CA nginx does not trust", function()
      local r = perform({ method = "GET", url = echo.https_url .. "/echo" }).ngx
      assert.equal("tls", r.code, r.message)
      assert.matches("lua_ssl_trusted_certificate", r.message, 1, true)
    end)

    it("tls every time: a refused certificate is never taken for a handshake done", function()
      -- (regression: with reused_session = false, lua-resty-core 0.1.25 took a
      -- handshake that ended without yielding for a success, unverified)
      for i = 1, 40 do
        local url = (i % 2 == 0) and echo.https_url .. "/echo" or ("https://wrong.test:%d/ping"):format(p.https_port)
        local r = perform({ method = "GET", url = url }).ngx
        assert.equal("tls", r.code, i .. ": " .. tostring(r.message))
      end
    end)

    it("config for a ca_file, saying what to configure instead (never a weaker check)", function()
      local r = perform({ method = "GET", url = echo.https_url .. "/echo", ca_file = echo.ca_file }).ngx
      assert.equal("config", r.code)
      assert.matches("lua_ssl_trusted_certificate", r.message, 1, true)
      assert.matches("tls.ca_file", r.message, 1, true)
    end)
  end)

  describe("keep-alive", function()
    it("reuses a connection after a whole reply, per host and port", function()
      local conns = p:run("transport_keepalive", { url = echo.url .. "/echo", n = 3 })
      assert.matches("^%d+$", conns[1])
      assert.equal(conns[1], conns[2])
      assert.equal(conns[1], conns[3])
    end)

    it("not after Connection: close", function()
      local conns = p:run("transport_keepalive", { url = echo.url .. "/echo", n = 3, close_first = "1" })
      assert.matches("^%d+$", conns[1])
      assert.not_equal(conns[1], conns[2])
      assert.equal(conns[2], conns[3])
    end)

    it("a pooled connection the peer closes unanswered is replaced, not an error (as curl does)", function()
      -- /once-per-connection answers the first request of a connection and
      -- closes on the next: every second request meets a dead pooled one
      for i = 1, 4 do
        local r = perform({ method = "GET", url = raw_peer.url .. "/once-per-connection", timeout = 5 }).ngx
        assert.equal(200, r.status, i .. ": " .. tostring(r.message))
        assert.equal("once", r.body)
      end
    end)
  end)

  describe("chosen by connkit", function()
    it("in the content phase and in timers (requests yield to nginx); curl in init_by_lua and when forced", function()
      local out = p:run("transport_choice", { base = echo.url, slow = raw_peer.url .. "/slow" })
      assert.equal("ngx", out.content)
      assert.equal("ngx", out.timer)
      assert.equal("curl", out.init)
      assert.matches("^GET /echo/x\n", out.echo)
      assert.matches("authorization=Bearer tok\nx%-region=eu\n", out.echo)
      assert.matches("^GET /echo/from%-timer\n", out.timer_echo)
      -- another light thread sleeping 0.1 s wakes on time while a 0.5 s request runs...
      assert.equal(200, out.ngx_status)
      assert.is_true(out.ngx_delay < 0.3, tostring(out.ngx_delay))
      -- ...but not when the curl transport blocks the worker
      assert.equal("curl", out.forced)
      assert.equal(200, out.curl_status)
      assert.is_true(out.curl_delay >= 0.45, tostring(out.curl_delay))
      assert.equal("ngx", out.auto)
      -- connkit.all: 3 x 0.5 s at once, then one req:start() (0.5 s)
      assert.same({ 200, 200, 200 }, out.all)
      assert.is_false(out.started_done)
      assert.equal(200, out.handle)
      assert.is_true(out.all_elapsed < 1.4, tostring(out.all_elapsed))
    end)

    it("nowhere in phases without cosockets: a request raises naming the phase and ngx.timer.at", function()
      local status, body = p:get("/phase/set")
      assert.equal(200, status)
      local name, why, ok, err = body:match("^(.-)|(.-)|(.-)|(.*)$")
      assert.equal("nil", name)
      assert.matches("set phase", why, 1, true)
      assert.equal("false", ok)
      assert.matches("set phase", err, 1, true)
      assert.matches("ngx.timer.at(0", err, 1, true)
      local _, _, headers = require("socket.http").request(p.url .. "/phase/filters")
      assert.matches("^nil|.-header_filter phase|false|.-ngx%.timer%.at%(0", headers["x-choice"])
      require("socket").sleep(0.2) -- the log phase runs after the reply
      status, body = p:get("/phase/log")
      assert.matches("^nil|.-log phase|false|.-ngx%.timer%.at%(0", body)
    end)
  end)

  describe("in light threads", function()
    it("runs transfers concurrently; poll and pending count them", function()
      local out = p:run("transport_async", { url = raw_peer.url .. "/slow", n = 4 })
      assert.equal(4, out.pending_at_start)
      assert.is_false(out.done_at_start)
      assert.is_true(out.elapsed < 1.2, tostring(out.elapsed)) -- 4 x 0.5 s at once
      assert.equal(4, out.finished + out.first_poll)
      assert.same({ "200 slow\n", "200 slow\n", "200 slow\n", "200 slow\n" }, out.results)
      assert.equal(0, out.pending_at_end)
      assert.is_true(out.done_at_end)
    end)

    it("cancel ends a transfer with code cancelled", function()
      local out = p:run("transport_async", { url = raw_peer.url .. "/slow", n = 3, cancel = "1" })
      assert.equal(1, out.first_poll)
      assert.equal("cancelled", out.results[2])
      assert.equal("200 slow\n", out.results[1])
      assert.equal(0, out.pending_at_end)
    end)
  end)
end)
