--- httpbin (Debian python3-httpbin) on a free loopback port, to echo what the
-- client sent. Debian's module is importable only by /usr/bin/python3.
-- gunicorn with threads keeps up with concurrent specs.
return function(helpers)
  local port = helpers.free_port()
  local proc = helpers.spawn("httpbin", ("/usr/bin/python3 -m gunicorn --bind 127.0.0.1:%d"
    .. " --workers 1 --threads 16 --keep-alive 5 --log-level warning httpbin:app"):format(port))
  helpers.wait_port(port, 30, proc)
  return {
    port = port,
    url = "http://127.0.0.1:" .. port,
    pid = proc.pid, -- gunicorn's master; the worker serving requests is its child
    stop = function() helpers.stop(proc) end,
  }
end
