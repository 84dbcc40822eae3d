--- Shared by the fault specs (spec/fault_*_spec.lua): the fault list, the
-- matrix of results (call x fault -> elapsed time, code), the documented
-- codes, the bound every call must keep, and the secret-leak check.
--
-- The matrix of a spec file goes to build/<lua>/fault-matrix/<concern>.txt;
-- with CONNKIT_FAULT_MATRIX=1 it is printed on stdout too.
local socket = require "socket"
local helpers = require "helpers"

local M = {}

--- A call returns within its deadline plus this (seconds).
M.BOUND = 0.5

--- The deadline of the calls under a fault (seconds): short, so that the
-- suite stays short; CONNKIT_FAULT_TIMEOUT=1 gives roomier runs.
M.TIMEOUT = tonumber(os.getenv("CONNKIT_FAULT_TIMEOUT") or "") or 0.5

--- The faults of the matrix: { column, proxy fault, argument } (the
-- arguments suit a deadline of 0.5 to 1 s; see spec/peers/faultproxy.js).
M.FAULTS = {
  { "latency", "latency", 2000 },         -- every chunk 2 s late
  { "bandwidth", "bandwidth", 2000 },     -- 2 kB/s
  { "stall", "stall" },                   -- accepted, never answered
  { "stall_headers", "stall_headers" },   -- headers, then nothing
  { "drip", "drip", 1000 },               -- 1 byte/s
  { "reset", "reset", 1000 },             -- RST after 1000 bytes (mid-body)
  { "slice", "slice" },                   -- 1-byte writes: must still work
  { "cut", "cut", 1000 },                 -- FIN after 1000 bytes (mid-body)
  { "cut_headers", "cut", 20 },           -- FIN inside the status line / headers
  { "slow_close", "slow_close", 2000 },   -- the close comes 2 s late: must still work
}

--- Faults a correct client gets through (the call succeeds).
M.HARMLESS = { slice = true, slow_close = true }

--- Codes README documents (Errors; SFTP Error codes).
M.DOCUMENTED = {}
for c in ([[connect dns timeout tls network url header template too_large too_many_redirects
  cancelled json invalid_grant invalid_client access_denied slow_down expired_token oauth_error
  auth token_endpoint reauthorize state_mismatch issuer_mismatch invalid_request no_token config
  store store_auth store_corrupt io lock_timeout lock_busy resolve connection negotiation
  host_key_unknown host_key_mismatch no_such_file permission_denied failure local_io aborted
  closed protocol]]):gmatch("%S+") do M.DOCUMENTED[c] = true end

local rows, order = {}, {}
local messages = {}   -- every error message and tostring of the run
local secrets = {}

--- Remembers a secret; every message is checked for it and each prefix of
-- 4 or more of its characters.
function M.secret(s)
  if s and #s >= 4 then secrets[#secrets + 1] = s end
end

--- Remembers a message (an error, a tostring) for the leak check.
function M.message(m)
  if m ~= nil then messages[#messages + 1] = tostring(m) end
end

--- Times fn; returns elapsed seconds and fn's first two results.
function M.timed(fn, ...)
  local t0 = socket.gettime()
  local r = { fn(...) }
  return socket.gettime() - t0, r[1], r[2]
end

--- Records one cell of the matrix and the error's text for the leak check.
function M.record(call, fault, elapsed, err)
  if not rows[call] then rows[call] = {}; order[#order + 1] = call end
  rows[call][fault] = ("%.2f %s"):format(elapsed, err and tostring(err.code) or "ok")
  if err then M.message(err); M.message(err.message) end
end

--- Asserts the common rules of a failed call: within deadline + BOUND, a
-- documented code (one of `codes` when given).
function M.assert_failure(label, elapsed, deadline, res, err, codes)
  assert(res == nil and err, label .. ": expected a failure, got a result")
  assert(M.DOCUMENTED[err.code], label .. ": undocumented code " .. tostring(err.code))
  if codes then
    local ok = false
    for _, c in ipairs(codes) do ok = ok or c == err.code end
    assert(ok, label .. ": code " .. tostring(err.code) .. ", expected " .. table.concat(codes, "/"))
  end
  assert(elapsed <= deadline + M.BOUND, ("%s: took %.2f s, deadline %g s + %g"):format(label, elapsed, deadline, M.BOUND))
end

--- Every remembered message checked for every secret and prefix of 4+
-- characters; returns the list of leaks (empty when clean).
function M.leaks()
  local found = {}
  for _, m in ipairs(messages) do
    for _, s in ipairs(secrets) do
      for k = #s, 4, -1 do
        if m:find(s:sub(1, k), 1, true) then
          found[#found + 1] = ("%q holds %d characters of a secret"):format(m:sub(1, 120), k)
          break
        end
      end
    end
  end
  return found
end

--- The matrix as a table: one line per call, one column per fault.
function M.table(title)
  local faults = {}
  for _, f in ipairs(M.FAULTS) do faults[#faults + 1] = f[1] end
  for _, call in ipairs(order) do
    for f in pairs(rows[call]) do
      local known = false
      for _, g in ipairs(faults) do known = known or g == f end
      if not known then faults[#faults + 1] = f end
    end
  end
  local w, cw = 14, 12
  for _, call in ipairs(order) do
    w = math.max(w, #call)
    for _, v in pairs(rows[call]) do cw = math.max(cw, #v) end
  end
  for _, f in ipairs(faults) do cw = math.max(cw, #f) end
  local col = " | %-" .. cw .. "s"
  local out = { ("%s (elapsed s, code; bound: deadline + %g s)"):format(title, M.BOUND) }
  local head = ("%-" .. w .. "s"):format("call \\ fault")
  for _, f in ipairs(faults) do head = head .. col:format(f) end
  out[#out + 1] = head
  for _, call in ipairs(order) do
    local line = ("%-" .. w .. "s"):format(call)
    for _, f in ipairs(faults) do line = line .. col:format(rows[call][f] or "-") end
    out[#out + 1] = line
  end
  return table.concat(out, "\n") .. "\n"
end

--- Writes the matrix under the build directory (and to stdout when
-- CONNKIT_FAULT_MATRIX=1).
function M.write(concern, title)
  local dir = helpers.root .. "/build/" .. helpers.lua .. "/fault-matrix"
  helpers.execute("mkdir -p " .. helpers.shell_quote(dir))
  local text = M.table(title)
  helpers.write_file(dir .. "/" .. concern .. ".txt", text)
  if os.getenv("CONNKIT_FAULT_MATRIX") == "1" then io.stdout:write("\n", text) end
end

return M
