--- OpenResty peer: Debian's nginx with its Lua module (libnginx-mod-http-lua,
-- loaded after the development kit it needs), on free loopback ports, with
-- its own prefix directory, stopped by PID. Specs run Lua code INSIDE it:
-- connkit is required in `init_by_lua` (before the fork, as a real host
-- does) and a scenario runs in the content phase of a request.
--
-- Use:
--   local openresty = require "peers.openresty"
--   local ngx_peer = helpers.peer("openresty")       -- the default instance, shared
--   local p = openresty.start(helpers, {              -- an instance of your own
--     workers = 4,                                    -- worker_processes (default 1; with more,
--                                                     --  listen ... reuseport spreads connections)
--     shared_dicts = { tokens = "1m" },               -- lua_shared_dict lines
--     trust = { other_peer.ca_file },                 -- more CAs for lua_ssl_trusted_certificate
--     locations = [[ location /slow { content_by_lua_block { ngx.sleep(1) ngx.say("slow") } } ]],
--     servers = { upstream = [[ location / { return 200 "up"; } ]],      -- a server of its own,
--                 secure = { tls = true, body = [[ location / { ... } ]] } },  -- on a free port
--     http = [[ lua_socket_log_errors off; ]],        -- raw lines in the http block
--     init = [[ ... ]],                               -- Lua run in init_by_lua after require "connkit"
--     log_level = "warn",                             -- error_log level (default "warn")
--     sanitize = true,                                -- ASan/UBSan preloaded into nginx (default:
--                                                     --  $CONNKIT_NGX_SANITIZE, set by make test-asan)
--   })
--   p:run("hello", { who = "x" })   --> the scenario's result, decoded; raises with the
--                                   --  message and the tail of nginx's error log on failure
--   p:call("hello", args)           --> status, decoded JSON (never raises on a scenario error)
--   p:get("/ping")                  --> status, body, seconds taken
--   p:parallel({ "/run/x", ... })   --> a batch of concurrent GETs (curl -Z); batch:wait()
--   p:run_all("x", n, args)         --> n concurrent runs of a scenario, waited for
--   p:error_log(), p:log_tail(n)    --  what nginx logged
--   p:sanitizer_reports()           --  under sanitize: the reports, or nil (stop() raises on any)
--   p.url, p.https_url, p.port, p.https_port, p.servers.<name>.url, p.ca_file, p.dir
--   p.stop()                        --  instances from start() also stop at the end of the run
--
-- A scenario is spec/nginx/<name>.lua (name: letters, digits, _; no leading
-- _), a file returning `function(args) -> result`: args are the request's
-- query arguments (strings), the result is sent back as JSON. A Lua error
-- becomes status 500 with `{ error = message, traceback = ... }` and a line
-- in the error log. GET /run/<name>?<args> runs it; GET /ping answers "pong".
-- The main server listens on `url` (HTTP) and `https_url` (TLS, with a
-- certificate for 127.0.0.1 and localhost from a CA made for the run; that CA
-- is in lua_ssl_trusted_certificate).
--
-- No `resolver` is configured: cosockets reach 127.0.0.1 only (a resolver
-- would send DNS queries off the machine; nginx then refuses host names with
-- "no resolver defined"). Add one with `http = [[ resolver ...; ]]`.
--
-- connkit's C module inside nginx is the LuaJIT build (nginx's Lua is
-- LuaJIT): $CONNKIT_NGX_BUILD (tools/run-specs.sh), else build/luajit;
-- under make test-asan build/luajit-asan, with nginx started with the
-- sanitizer runtimes preloaded.
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local url_escape = require("socket.url").escape
local cjson = require "cjson"
local lfs = require "lfs"

local M = {}

local MODULES = "/usr/lib/nginx/modules"
M.lua_module = MODULES .. "/ngx_http_lua_module.so"

local running = {} -- instances started here and not yet stopped

--- Whether nginx and its Lua module are installed (tools/deps.sh test).
function M.available()
  for _, path in ipairs({ "/usr/sbin/nginx", M.lua_module }) do
    local f = io.open(path, "rb")
    if not f then return false end
    f:close()
  end
  return true
end

local function conf_text(p, opts)
  local root = p.root
  local lines = {}
  local function add(s, ...) lines[#lines + 1] = select("#", ...) > 0 and s:format(...) or s end
  -- ndk first: Debian enables it as 10-mod-http-ndk.conf, the Lua module as 50-
  add("load_module %s/ndk_http_module.so;", MODULES)
  add("load_module %s/ngx_http_lua_module.so;", MODULES)
  -- as root, the workers stay root: they read the checkout and the prefix (0700)
  if p.as_root then add("user root;") end
  add("worker_processes %d;", p.workers)
  add("daemon off;")
  add("pid %s/nginx.pid;", p.dir)
  add("error_log %s/error.log %s;", p.dir, opts.log_level or "warn")
  add("events { worker_connections 1024; }")
  add("http {")
  add("  access_log off;")
  add("  default_type application/octet-stream;")
  for _, t in ipairs({ "client_body", "proxy", "fastcgi", "uwsgi", "scgi" }) do
    add("  %s_temp_path %s/%s;", t, p.dir, t)
  end
  add("  keepalive_requests 100000;")
  add("  lua_package_path '%s/lua/?.lua;%s/lua/?/init.lua;%s/spec/?.lua;;';", root, root, root)
  add("  lua_package_cpath '%s/?.so;;';", p.ngx_build)
  add("  lua_ssl_trusted_certificate %s/trusted.pem;", p.dir)
  add("  lua_ssl_verify_depth 3;")
  local names = {}
  for name in pairs(opts.shared_dicts or {}) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do add("  lua_shared_dict %s %s;", name, opts.shared_dicts[name]) end
  add("  init_by_lua_block {")
  add("    require \"connkit\"")
  add("    require(\"nginx._harness\").dir = %q", root .. "/spec/nginx")
  if opts.init then add(opts.init) end
  add("  }")
  if opts.http then add(opts.http) end
  local ssl = ("    ssl_certificate %s/server.pem;\n    ssl_certificate_key %s/server.key;"):format(p.dir, p.dir)
  -- several workers: the kernel spreads connections over them (reuseport),
  -- instead of whichever worker wakes first taking most
  local spread = p.workers > 1 and " reuseport" or ""
  add("  server {")
  add("    listen 127.0.0.1:%d%s;", p.port, spread)
  add("    listen 127.0.0.1:%d ssl%s;", p.https_port, spread)
  add(ssl)
  add("    location = /ping { default_type text/plain; return 200 \"pong\\n\"; }")
  add("    location ~ ^/run/([A-Za-z0-9][A-Za-z0-9_]*)$ {")
  add("      default_type application/json;")
  add("      content_by_lua_block { require(\"nginx._harness\").run(ngx.var[1]) }")
  add("    }")
  if opts.locations then add(opts.locations) end
  add("  }")
  for _, name in ipairs(p.server_names) do
    local s = p.servers[name]
    add("  server {")
    add("    listen 127.0.0.1:%d%s%s;", s.port, s.tls and " ssl" or "", spread)
    if s.tls then add(ssl) end
    add(s.body)
    add("  }")
  end
  add("}")
  return table.concat(lines, "\n") .. "\n"
end

local Peer = {}
Peer.__index = Peer

--- The whole error log.
function Peer:error_log()
  return M.read(self.dir .. "/error.log") or ""
end

--- The last `n` lines (default 40) of the error log.
function Peer:log_tail(n)
  local lines = {}
  for line in self:error_log():gmatch("[^\n]+") do lines[#lines + 1] = line end
  return table.concat(lines, "\n", math.max(1, #lines - (n or 40) + 1))
end

--- GET path on the main server: status (or nil, error), body, seconds.
function Peer:get(path, timeout)
  local t0 = socket.gettime()
  local chunks = {}
  local _, status = http.request {
    url = self.url .. path,
    sink = ltn12.sink.table(chunks),
    create = function()
      local s = socket.tcp()
      s:settimeout(timeout or 30)
      return s
    end,
  }
  return tonumber(status), table.concat(chunks), socket.gettime() - t0, status
end

--- The sanitizer reports of this instance (when it runs the ASan build), or
-- nil: each worker that hit one has written <dir>/asan.<pid> and died.
function Peer:sanitizer_reports()
  if not self.sanitize then return nil end
  local found = {}
  for name in lfs.dir(self.dir) do
    if name:match("^asan%.%d+$") then
      local text = M.read(self.dir .. "/" .. name) or ""
      if text:find("ERROR: %a+Sanitizer") or text:find("runtime error:") then found[#found + 1] = text end
    end
  end
  return #found > 0 and table.concat(found, "\n") or nil
end

local function query(args)
  local keys = {}
  for k in pairs(args or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for i, k in ipairs(keys) do keys[i] = url_escape(k) .. "=" .. url_escape(tostring(args[k])) end
  return #keys > 0 and ("?" .. table.concat(keys, "&")) or ""
end
M.query = query

--- Runs spec/nginx/<name>.lua inside nginx: status, decoded JSON (or the raw
-- body when it is not JSON).
function Peer:call(name, args, timeout)
  local status, body, _, err = self:get("/run/" .. name .. query(args), timeout)
  if not status then return nil, "no reply from nginx: " .. tostring(err) end
  local ok, decoded = pcall(cjson.decode, body)
  return status, ok and decoded or body
end

--- Runs a scenario and returns its result; raises (with the error log's
-- tail) when the scenario fails or nginx does not answer.
function Peer:run(name, args, timeout)
  local status, result = self:call(name, args, timeout)
  if status == 200 then return result end
  local msg = type(result) == "table" and (result.traceback or result.error) or tostring(result)
  local reports = self:sanitizer_reports()
  error(("scenario %s failed (status %s): %s\n--- nginx error log (%s) ---\n%s%s")
    :format(name, tostring(status), tostring(msg), self.dir .. "/error.log", self:log_tail(),
      reports and ("\n--- sanitizer reports ---\n" .. reports) or ""), 2)
end

--- Starts concurrent GETs of `paths` on the main server (one curl, -Z) and
-- returns a batch; batch:wait() -> { { status, time, url }, ... } in the
-- order given, and the batch's wall time in seconds.
function Peer:parallel(paths, timeout)
  local args = { "curl -s --no-progress-meter -Z --parallel-immediate --parallel-max", #paths,
    "--max-time", timeout or 30, "-w", M.helpers.shell_quote("%{http_code} %{time_total} %{url_effective}\\n") }
  for _, path in ipairs(paths) do
    args[#args + 1] = "-o /dev/null " .. M.helpers.shell_quote(self.url .. path)
  end
  local t0 = socket.gettime()
  local proc = M.helpers.spawn("openresty-batch", table.concat(args, " "))
  local batch = {}
  function batch.wait()
    local deadline = socket.gettime() + (timeout or 30) + 5
    while M.running(proc.pid) and socket.gettime() < deadline do socket.sleep(0.005) end
    local wall = socket.gettime() - t0
    M.stop(proc)
    local by_url = {}
    for code, t, url in (M.read(proc.log) or ""):gmatch("(%d+) ([%d.]+) (%S+)") do
      by_url[url] = by_url[url] or {}
      table.insert(by_url[url], { status = tonumber(code), time = tonumber(t), url = url })
    end
    local results = {}
    for i, path in ipairs(paths) do
      local list = by_url[self.url .. path]
      results[i] = list and table.remove(list, 1) or { url = self.url .. path }
    end
    return results, wall
  end
  return batch
end

--- n concurrent runs of scenario `name` (GET /run/<name> with `args` and
-- call = 1..n, one curl) and waits for them: { { status, time, url }, ... }
-- in call order, and the wall time in seconds.
function Peer:run_all(name, n, args, timeout)
  local paths = {}
  for i = 1, n do
    local a = { call = i }
    for k, v in pairs(args or {}) do a[k] = v end
    paths[i] = "/run/" .. name .. M.query(a)
  end
  return self:parallel(paths, timeout or 60).wait()
end

--- Whether process `pid` still runs. A zombie counts as ended: this
-- machine's init reaps orphans only about once a second, and kill -0 (what
-- helpers.alive asks) succeeds on a zombie.
function M.running(pid)
  local stat = M.read("/proc/" .. pid .. "/stat")
  if stat then return stat:match("^%d+ %b() (%a)") ~= "Z" end
  if M.read("/proc/self/stat") then return false end -- /proc works: it is gone
  return M.helpers.alive(pid)
end

--- Stops a process spawned here: TERM, up to 5 s for it to end, then KILL.
function M.stop(proc)
  if not proc.pid then return end
  M.helpers.execute("kill " .. proc.pid .. " 2>/dev/null")
  local deadline = socket.gettime() + 5
  while M.running(proc.pid) and socket.gettime() < deadline do socket.sleep(0.01) end
  if M.running(proc.pid) then M.helpers.execute("kill -9 " .. proc.pid .. " 2>/dev/null") end
  proc.pid = nil
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- Starts an instance (see the header for opts).
function M.start(helpers, opts)
  opts = opts or {}
  M.helpers = helpers
  local root = helpers.root
  if root:sub(1, 1) ~= "/" then root = assert(os.getenv("PWD"), "CONNKIT_ROOT is not set") .. "/" .. root end
  local ngx_build = os.getenv("CONNKIT_NGX_BUILD") or (root .. "/build/luajit")
  local sanitize = opts.sanitize
  if sanitize == nil then sanitize = os.getenv("CONNKIT_NGX_SANITIZE") == "1" end
  assert(M.available(), "nginx's Lua module is not installed (" .. M.lua_module
    .. "): run `sh tools/deps.sh` as root (it installs libnginx-mod-http-lua)")
  assert(M.read(ngx_build .. "/connkit/core.so"), "no LuaJIT build of connkit in " .. ngx_build
    .. ": run `make LUA=luajit` (make test builds it)")
  local p = setmetatable({
    root = root, ngx_build = ngx_build, dir = helpers.tmpdir("openresty"),
    workers = opts.workers or 1, port = helpers.free_port(), https_port = helpers.free_port(),
    servers = {}, server_names = {}, sanitize = sanitize,
  }, Peer)
  local ok, uid = helpers.run("id -u")
  p.as_root = ok and uid:match("^%s*0%s*$") ~= nil
  for name, s in pairs(opts.servers or {}) do
    if type(s) == "string" then s = { body = s } end
    local port = helpers.free_port()
    p.servers[name] = { port = port, tls = s.tls, body = s.body,
      url = (s.tls and "https" or "http") .. "://127.0.0.1:" .. port }
    p.server_names[#p.server_names + 1] = name
  end
  table.sort(p.server_names)
  local function sh(cmd)
    local done, out = helpers.run(cmd)
    assert(done, "openresty peer setup failed: " .. cmd .. "\n" .. out)
  end
  local q = helpers.shell_quote
  -- a CA made for this run and a server certificate for 127.0.0.1 / localhost
  sh(("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
    .. " -subj '/CN=connkit openresty test CA' -keyout ca.key -out ca.pem"
    .. " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=127.0.0.1'"
    .. " -keyout server.key -out server.csr"
    .. " && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext"
    .. " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
    .. " -extfile san.ext -out server.pem 2>/dev/null && cp ca.pem trusted.pem"):format(q(p.dir)))
  for _, ca in ipairs(opts.trust or {}) do
    sh(("cat %s >> %s/trusted.pem"):format(q(ca), q(p.dir)))
  end
  p.ca_file = p.dir .. "/ca.pem"
  p.url = "http://127.0.0.1:" .. p.port
  p.https_url = "https://127.0.0.1:" .. p.https_port
  helpers.write_file(p.dir .. "/nginx.conf", conf_text(p, opts))
  local env
  if p.sanitize then
    -- the ASan build of connkit in nginx: the runtimes preloaded, their
    -- reports in <dir>/asan.<pid> (see sanitizer_reports); no leak check,
    -- nginx does not free its memory at exit
    local _, asan = helpers.run("gcc -print-file-name=libasan.so")
    local _, ubsan = helpers.run("gcc -print-file-name=libubsan.so")
    env = {
      LD_PRELOAD = asan:match("%S+") .. " " .. ubsan:match("%S+"),
      ASAN_OPTIONS = "detect_leaks=0:abort_on_error=0:log_path=" .. p.dir .. "/asan",
      UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1:log_path=" .. p.dir .. "/asan",
    }
  end
  local proc = helpers.spawn("openresty", ("/usr/sbin/nginx -p %s -c %s/nginx.conf -e %s/error.log")
    :format(q(p.dir), q(p.dir), q(p.dir)), { log = p.dir .. "/stdout.log", env = env })
  proc.log = p.dir .. "/error.log" -- wait_port shows the error log when nginx dies at start
  local started, err = pcall(function()
    helpers.wait_port(p.port, 15, proc)
    helpers.wait_port(p.https_port, 15, proc)
    for _, name in ipairs(p.server_names) do helpers.wait_port(p.servers[name].port, 15, proc) end
  end)
  if not started then
    M.stop(proc)
    error(tostring(err) .. "\n--- nginx.conf ---\n" .. M.read(p.dir .. "/nginx.conf"), 2)
  end
  running[p] = true
  -- stops nginx; raises when a worker hit a sanitizer report
  p.stop = function()
    M.stop(proc)
    running[p] = nil
    local reports = p:sanitizer_reports()
    if reports then
      p.sanitize = false -- reported once
      error("nginx (" .. p.dir .. ") had sanitizer reports:\n" .. reports, 2)
    end
  end
  return p
end

-- Instances from start() stop when the suite ends (helpers.peer's instance
-- is stopped by helpers too; stop() twice is harmless).
local ok, busted = pcall(require, "busted")
if ok and type(busted) == "table" and busted.subscribe then
  pcall(function()
    busted.subscribe({ "suite", "end" }, function()
      for p in pairs(running) do
        local stopped, err = pcall(p.stop)
        if not stopped then io.stderr:write(tostring(err), "\n") end
      end
      return nil, true
    end)
  end)
end

--- helpers.peer("openresty"): the default instance (one worker).
return setmetatable(M, { __call = function(_, helpers) return M.start(helpers) end })
