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

-- The next request's target (answered at once), or nil when none comes
-- within `timeout` seconds.
local function take(timeout)
  local target, code, msg = listener:accept(timeout)
  if not target and code == "timeout" then return nil end
  assert(target, ("accept failed: %s %s"):format(tostring(code), tostring(msg)))
  listener:reply(200, "ok")
  return target
end

return function(data)
  local c1 = fuzz.send(listener.port, data)
  local c2 = fuzz.send(listener.port, "GET " .. SENTINEL .. " HTTP/1.1\r\n\r\n")
  -- what the listener made of the fuzz request: nil when it dropped it
  local target = assert(take(5), "no request taken")
  if target ~= SENTINEL then
    assert(take(5) == SENTINEL, "the sentinel request was lost")
  elseif data:find(SENTINEL, 1, true) then
    -- (was that the fuzz request? then the sentinel is still waiting)
    local again = take(0.002) -- (both connections were made before accept)
    assert(again == nil or again == SENTINEL, "a third request?")
    if not again then target = nil end
  else
    target = nil
  end
  -- the request line as RFC 9112 writes it: up to the first LF (CR before
  -- it dropped), within what the listener reads (16 KiB)
  local line = data:sub(1, 16384):match("^[^\n]*"):gsub("\r$", "")
  local want = line:match("^[^%c ]+ ([^%c ]+) [^%c ]+$")
  if target then
    assert(target ~= "" and not target:find("[%c ]"),
      ("target %q is empty or holds a control character or space"):format(target))
    assert(line:find(target, 1, true), ("target %q is not in the request line %q"):format(target, line))
  end
  if want then
    assert(target == want, ("request line %q: target %s, not %q"):format(line,
      target and ("%q"):format(target) or "none (dropped)", want))
  end
  fuzz.close(c1)
  fuzz.close(c2)
end
