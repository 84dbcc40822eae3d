--- Whole-file transfers for SFTP sessions: get (download) and put (upload).
--
-- Data moves in large blocks (sftp.chunk_size, default 1 MiB) that libssh2
-- sends as many pipelined SFTP requests, so a transfer is not bound by
-- round trips. The target is written under `<target>.part` and renamed into
-- place when complete: a failed transfer never leaves a truncated target.
-- The `.part` file stays after a failure, and `resume = true` continues
-- from its size. A Lua error raised by the progress callback aborts the
-- transfer (files closed, `.part` kept) and is raised again afterwards;
-- a callback that returns false aborts with err.code "aborted".
--
-- get and put return the bytes moved by this call: the file's size, or with
-- `resume` what was missing (size minus what the `.part` file held).
--
-- `parallel = n` (1 to 16, default 1) moves a large file over n sessions
-- at once, each part in a thread of its own: see connkit.sftp.parallel.
-- @module connkit.sftp.transfer
local errors = require "connkit.errors"
local schema = require "connkit.sftp.schema"
local parallel = require "connkit.sftp.parallel"
local raise = require("connkit.options").raise -- (at the user's line)

local M = {}

local OPTS = { progress = "callable", resume = "boolean", chunk_size = "chunk_size", parallel = "count" }

-- Checks the arguments of get/put (raised at the user's call, two levels
-- up: Session:get tail-calls here).
local function check_args(what, from, to, opts)
  schema.check_string(what, "the source path", from)
  schema.check_string(what, "the target path", to)
  opts = schema.check_opts(what, opts, OPTS)
  if opts.parallel and opts.parallel > parallel.MAX then
    raise(("%s: option 'parallel' must be a whole number from 1 to %d"):format(what, parallel.MAX))
  end
  return opts
end

local function local_error(what, path, msg)
  return errors.new("local_io", ("%s %s: %s"):format(what, path, tostring(msg)))
end

-- The result of a core pump: bytes done, or nil, err; a progress callback
-- error is raised again here, after every handle is closed.
local function result(done, code, msg)
  if done then return done end
  if code == "callback" then error(msg, 0) end
  return nil, errors.from_core(code, msg)
end

--- Downloads `remote` into `localpath`. opts: progress(done, total),
-- resume (continue `<localpath>.part`), chunk_size.
-- @return bytes moved by this call, or nil, err (a progress error is re-raised)
-- @tparam table session the session
-- @tparam string remote the remote file
-- @tparam string localpath the local file
-- @tparam[opt] table opts progress, resume, chunk_size
function M.get(session, remote, localpath, opts)
  opts = check_args("sftp:get", remote, localpath, opts)
  local chunk = schema.whole(opts.chunk_size or session.chunk_size)
  local cs = session._s
  local tmp = localpath .. ".part"
  local rf, code, msg = cs:open(remote, "r")
  if not rf then return nil, errors.from_core(code, msg) end
  local st
  st, code, msg = rf:fstat()
  if not st then rf:close() return nil, errors.from_core(code, msg) end
  local total = st.size
  local offset = 0
  -- a marker: parts were writing .part when the process ended; its size
  -- may cover gaps, so it is no place to resume from
  local marker = parallel.marker(tmp)
  local gaps = io.open(marker, "rb")
  if gaps then gaps:close() end
  if opts.resume and not gaps then
    local pf = io.open(tmp, "rb")
    if pf then
      offset = pf:seek("end") or 0
      pf:close()
      if total and offset > total then offset = 0 end
    end
  end
  local k = total and parallel.parts(opts.parallel, total - offset) or 1
  local done, c, m
  if k > 1 then
    done, c, m = parallel.get(session, rf, remote, tmp, offset, total, k, chunk, opts.progress)
    rf:close()
    if not done and type(c) == "table" then return nil, c end
  else
    done, c, m = rf:pump("get", tmp, offset, chunk, opts.progress, total)
    rf:close()
    if done and gaps then os.remove(marker) end
  end
  if not done then
    if c ~= "callback" and c ~= "aborted" and c ~= "local_io" then m = m .. " (" .. remote .. ")" end
    return result(nil, c, m)
  end
  local rok, rerr = os.rename(tmp, localpath)
  if not rok then return nil, local_error("rename", tmp, rerr) end
  return done - offset
end

--- Uploads `localpath` to `remote`. opts: progress(done, total), resume
-- (continue `<remote>.part` on the server), chunk_size.
-- @return bytes moved by this call, or nil, err (a progress error is re-raised)
-- @tparam table session the session
-- @tparam string localpath the local file
-- @tparam string remote the remote file
-- @tparam[opt] table opts progress, resume, chunk_size
function M.put(session, localpath, remote, opts)
  opts = check_args("sftp:put", localpath, remote, opts)
  local chunk = schema.whole(opts.chunk_size or session.chunk_size)
  local cs = session._s
  local tmp = remote .. ".part"
  local inp, ierr = io.open(localpath, "rb")
  if not inp then return nil, local_error("open", localpath, ierr) end
  local total = inp:seek("end")
  inp:close()
  local offset = 0
  local marker = parallel.marker(tmp) -- as in get; asked only to resume
  local gaps = false
  if opts.resume then
    local mst, mcode, mmsg = cs:stat(marker, true)
    if not mst and mcode ~= "no_such_file" then return nil, errors.from_core(mcode, mmsg) end
    gaps = mst ~= nil
    local st = cs:stat(tmp, false)
    local size = st and st.size and st.size <= total and st.size or nil
    if gaps then
      offset = parallel.put_resume_offset(cs, marker, size)
    elseif size then
      offset = size
    end
  end
  local wf, code, msg = cs:open(tmp, offset > 0 and "wc" or "wct")
  if not wf then return nil, errors.from_core(code, msg) end
  local k = parallel.parts(opts.parallel, total - offset)
  local done, c, m
  if k > 1 then
    done, c, m = parallel.put(session, wf, localpath, tmp, offset, total, k, chunk, opts.progress)
    wf:close()
    if not done and type(c) == "table" then return nil, c end
  else
    done, c, m = wf:pump("put", localpath, offset, chunk, opts.progress, total)
    wf:close()
    if done and gaps then cs:remove(marker) end
  end
  if not done then
    if c ~= "callback" and c ~= "aborted" and c ~= "local_io" then m = m .. " (" .. tmp .. ")" end
    return result(nil, c, m)
  end
  local ok, err = session:rename(tmp, remote, { overwrite = true })
  if not ok then return nil, err end
  return done - offset
end

return M
