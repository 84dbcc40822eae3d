--- nginx on two free loopback ports: plain HTTP and HTTPS with a certificate
-- from a CA made for the run. It echoes the raw request target and headers
-- ($request_uri is what the client sent, before any decoding), tells which
-- connection served a request (keep-alive checks), and redirects.
return function(helpers)
  local dir = helpers.tmpdir("nginx")
  local http_port, https_port = helpers.free_port(), helpers.free_port()
  local function sh(cmd)
    local ok, out = helpers.run(cmd)
    assert(ok, "nginx peer setup failed: " .. cmd .. "\n" .. out)
  end
  -- CA and a server certificate for 127.0.0.1 / localhost
  sh(("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
    .. " -subj '/CN=connkit test CA' -keyout ca.key -out ca.pem"
    .. " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=127.0.0.1'"
    .. " -keyout server.key -out server.csr"
    .. " && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext"
    .. " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
    .. " -extfile san.ext -out server.pem"):format(helpers.shell_quote(dir)))
  local echo = [[
      default_type text/plain;
      location /echo {
        return 200 "$request_method $request_uri\nauthorization=$http_authorization\nx-region=$http_x_region\nconnection=$connection\ncontent-type=$content_type\n";
      }
      location = /redirect-same { return 302 /echo/after-redirect; }
      location = /redirect-cross { return 302 http://localhost:$server_port/echo/cross; }
      location = /redirect-loop { return 302 /redirect-loop; }
      location = /post-303 { return 303 /echo/after-303; }
]]
  local conf = ([[
worker_processes 1;
daemon off;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %s/body;
  proxy_temp_path %s/proxy;
  fastcgi_temp_path %s/fastcgi;
  uwsgi_temp_path %s/uwsgi;
  scgi_temp_path %s/scgi;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:%d;
%s
  }
  server {
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s/server.pem;
    ssl_certificate_key %s/server.key;
%s
  }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, http_port, echo, https_port, dir, dir, echo)
  helpers.write_file(dir .. "/nginx.conf", conf)
  local proc = helpers.spawn("nginx", ("/usr/sbin/nginx -p %s -c %s/nginx.conf -e %s/error.log")
    :format(dir, dir, dir))
  helpers.wait_port(http_port, 15, proc)
  helpers.wait_port(https_port, 15, proc)
  return {
    url = "http://127.0.0.1:" .. http_port,
    https_url = "https://127.0.0.1:" .. https_port,
    port = http_port, https_port = https_port,
    ca_file = dir .. "/ca.pem",
    dir = dir,
    stop = function() helpers.stop(proc) end,
  }
end
