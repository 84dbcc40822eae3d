--- One file moved over several SFTP sessions at once: get/put with
-- `parallel = n` (see connkit.sftp.transfer).
--
-- libssh2 1.10 encrypts in the calling thread, one 16-byte block per cipher
-- call, so one stream is bound by one core. With `parallel = n` the file is
-- cut into n back-to-back byte ranges of at least 8 MiB (fewer parts when the
-- file is smaller: under 16 MiB it goes as one stream); the first range runs
-- on the caller's session, the others on sessions opened for the transfer
-- (same account, host key checked, logged in as the first) and closed after
-- it. Each range runs in a thread of its own (csrc/sftp_parallel.c). When
-- the server will not give more sessions, the file goes in fewer parts.
--
-- The target is written under `.part` as with one stream. While parts write
-- at their offsets, `.part` may have gaps: a marker file `.part.parallel`
-- next to it says so. On a failure `.part` is cut back to the bytes in place
-- from its start without a gap, so `resume = true` continues from there; if
-- the process dies meanwhile the marker stays empty and a resume starts from
-- the beginning (never from a size that has gaps).
--
-- A get's marker is then removed: the local file is written by this
-- process's threads only, all ended before the cut. A put's marker instead
-- records the length of that prefix, and a resume starts there whatever the
-- server's `.part` size has become: the server process of a connection that
-- died may still apply writes it had buffered, after the cut, which would
-- grow `.part` past a gap.
-- @module connkit.sftp.parallel
local core = require "connkit.core"
local errors = require "connkit.errors"
local whole = require("connkit.sftp.schema").whole

local M = {}

M.MAX = 16
local MIN_PART = 8 * 1024 * 1024

--- The marker next to a `.part` file written by parts.
-- @tparam string tmp the `.part` path
-- @treturn string the marker's path
function M.marker(tmp) return tmp .. ".parallel" end

--- How many parts to use for `left` bytes when `n` are asked for (1: one
-- stream).
-- @tparam ?number n the `parallel` option (nil: 1)
-- @tparam number left the bytes still to move
-- @treturn number the parts (1 when the file is too small to split)
function M.parts(n, left)
  local k = math.min(n or 1, math.floor(left / MIN_PART))
  return k >= 2 and k or 1
end

local function close_all(files, sessions)
  for i = #files, 2, -1 do files[i]:close() end
  for _, s in ipairs(sessions) do s:close() end
end

-- Opens up to k - 1 more sessions like `session`, each with `path` open in
-- `flags`; returns the list of core files (the first is `first`) and the
-- sessions. A session that cannot be had (a server that limits connections,
-- a key file gone since) ends the list: the parts are fewer, the transfer
-- goes on.
local function open_parts(session, first, k, path, flags)
  local files, sessions = { first }, {}
  for i = 2, k do
    local s = session:_another()
    if not s then break end
    local f = s._s:open(path, flags)
    if not f then
      s:close()
      break
    end
    sessions[#sessions + 1] = s
    files[i] = f
  end
  return files, sessions
end

-- The ranges [offset, total) cut into #files back-to-back parts.
local function ranges(files, offset, total)
  local k, left = #files, total - offset
  local list, at = {}, offset
  for i = 1, k do
    local stop = i == k and total or whole(offset + math.floor(left / k) * i)
    list[i] = { files[i], at, stop }
    at = stop
  end
  return list
end

-- Runs the pump; returns done, or nil, code, message, prefix (the length
-- .part was cut back to, gap-free from its start; nil when it could not be).
local function pump(dir, lpath, files, chunk, offset, total, progress)
  local done, code, msg, prefix = core.sftp_pump_parallel(dir, lpath, ranges(files, offset, total), chunk,
    offset, total, progress)
  if done then return done end
  return nil, code, msg, prefix
end

--- A get of `remote` (open as `rf` on the caller's session) into `tmp`,
-- which holds the first `offset` bytes, in k parts.
-- @param session the caller's `connkit.sftp` session
-- @param rf the remote file, open for reading on that session
-- @tparam string remote the remote path
-- @tparam string tmp the local `.part` path
-- @tparam number offset the bytes `tmp` already holds
-- @tparam number total the file's size
-- @tparam number k the parts (from `parts`)
-- @tparam number chunk the bytes asked per read
-- @tparam ?function progress called with the bytes done so far
-- @return bytes done (from the file's start), or nil, code, message (a core
-- failure), or nil, err
function M.get(session, rf, remote, tmp, offset, total, k, chunk, progress)
  local files, sessions = open_parts(session, rf, k, remote, "r")
  local marker = M.marker(tmp)
  local mf, merr = io.open(marker, "wb")
  if not mf then
    close_all(files, sessions)
    return nil, errors.new("local_io", "open " .. marker .. ": " .. tostring(merr))
  end
  mf:close()
  if offset == 0 then -- .part exists, empty
    local pf, perr = io.open(tmp, "wb")
    if not pf then
      close_all(files, sessions)
      return nil, errors.new("local_io", "open " .. tmp .. ": " .. tostring(perr))
    end
    pf:close()
  end
  local done, code, msg, prefix = pump("get", tmp, files, chunk, offset, total, progress)
  close_all(files, sessions)
  if done or prefix then os.remove(marker) end
  return done, code, msg
end

--- A put of `localpath` into the remote `tmp` (open as `wf` on the caller's
-- session, holding the first `offset` bytes), in k parts.
-- @param session the caller's `connkit.sftp` session
-- @param wf the remote `.part` file, open for writing on that session
-- @tparam string localpath the local file
-- @tparam string tmp the remote `.part` path
-- @tparam number offset the bytes `tmp` already holds
-- @tparam number total the file's size
-- @tparam number k the parts (from `parts`)
-- @tparam number chunk the bytes asked per write
-- @tparam ?function progress called with the bytes done so far
-- @return as `get`
function M.put(session, wf, localpath, tmp, offset, total, k, chunk, progress)
  local cs = session._s
  local files, sessions = open_parts(session, wf, k, tmp, "w")
  local marker = M.marker(tmp)
  local mf, code, msg = cs:open(marker, "wct")
  if not mf then
    close_all(files, sessions)
    return nil, errors.from_core(code, msg .. " (" .. marker .. ")")
  end
  mf:close()
  local done, c, m, prefix = pump("put", localpath, files, chunk, offset, total, progress)
  close_all(files, sessions)
  if done and cs:is_open() then
    cs:remove(marker)
  elseif prefix and cs:is_open() then
    -- (if this fails the empty marker stays, and a write cut short leaves
    -- fewer digits, a shorter prefix: both safe)
    local f = cs:open(marker, "wct")
    if f then
      f:write(tostring(prefix))
      f:close()
    end
  end
  return done, c, m
end

--- Where a put may resume when the marker is beside the server's `.part`:
-- the prefix length the marker records (no more than `.part` holds), or 0
-- when it records none (the process ended while parts were writing).
-- @param cs the core session
-- @tparam string marker the marker's path
-- @tparam ?number size the size of `.part` (nil: there is none)
-- @treturn number the offset to resume from
function M.put_resume_offset(cs, marker, size)
  local f = cs:open(marker, "r")
  if not f then return 0 end
  local text = f:read(32)
  f:close()
  local prefix = type(text) == "string" and tonumber(text:match("^%d+$"))
  if not prefix or not size then return 0 end
  return math.min(prefix, size)
end

return M
