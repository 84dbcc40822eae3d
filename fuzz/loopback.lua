-- Fuzz target: the loopback redirect listener's request parser
-- (csrc/loopback.c listener:accept), over real loopback connections.
-- Input: the bytes a browser would send. A second, well-formed request
-- follows on another connection, so a request the listener drops does not
-- leave accept() waiting: it then answers with the sentinel's target.
-- Oracles: accept() returns a request target that lies inside the request
-- line (not empty, no control character or space in it); a request whose line is "METHOD
-- target version" is taken, with that target; the listener stays usable.
local core = require "connkit.core"

local SENTINEL = "/fuzz-sentinel"
local listener = assert(core.listen(0))

local function take()
  local target, code, msg = listener:accept(5)
  assert(target, ("accept failed: %s %s"):format(tostring(code), tostring(msg)))
  listener:reply(200, "ok")
  return target
end

return function(data)
  local c1 = fuzz.send(listener.port, data)
  local c2 = fuzz.send(listener.port, "GET " .. SENTINEL .. " HTTP/1.1\r\n\r\n")
  local target = take()
  -- the request line as RFC 9112 writes it: up to the first LF (CR before
  -- it dropped), within what the listener reads (16 KiB)
  local line = data:sub(1, 16384):match("^[^\n]*"):gsub("\r$", "")
  local want = line:match("^[^%c ]+ ([^%c ]+) [^%c ]+$")
  if target ~= SENTINEL or want == SENTINEL then
    assert(target ~= "" and not target:find("[%c ]"),
      ("target %q is empty or holds a control character or space"):format(target))
    assert(line:find(target, 1, true), ("target %q is not in the request line %q"):format(target, line))
    assert(take() == SENTINEL, "the sentinel request was lost")
  end
  if want then
    assert(target == want, ("request line %q: target %q, not %q"):format(line, target, want))
  end
  fuzz.close(c1)
  fuzz.close(c2)
end
