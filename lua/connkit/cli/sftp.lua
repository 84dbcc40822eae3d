--- The connkit sftp command: SFTP with the account's credentials,
-- `connkit sftp DEF --account ID ls|get|put|rm|mkdir|mv ...`. get and put write `<target>.part` and rename
-- it when complete; --resume continues a .part a broken transfer left.
-- A progress bar goes to stderr when it is a terminal.
-- @module connkit.cli.sftp
local context = require "connkit.cli.context"
local fail = require "connkit.cli.fail"
local progress = require "connkit.cli.progress"

local M = {}

local function basename(p) return (p:gsub("/+$", ""):match("([^/]*)$")) end

local function check(what, ok, err)
  if not ok and err then fail.error(err, what) end
  return ok
end

local function when(t)
  if not t then return "-" end
  return os.date("!%Y-%m-%d %H:%M", t)
end

local TYPE = { dir = "d", link = "l", file = "-", other = "?" }

local ops = {}

function ops.ls(s, a)
  local path = a.path or "."
  local list = check("ls " .. path, s:list(path))
  table.sort(list, function(x, y) return x.name < y.name end)
  for _, e in ipairs(list) do
    io.stdout:write(("%s %04o %12s %s %s\n"):format(TYPE[e.type] or "?", (e.mode or 0) % 4096,
      tostring(e.size or "-"), when(e.mtime), e.name))
  end
end

-- Size of a local file, or nil.
local function local_size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

-- "connkit: FROM -> TO: N bytes[ (resumed after M bytes)]" on stderr
local function done_line(from, to, moved, start)
  io.stderr:write(("connkit: %s -> %s: %d bytes%s\n"):format(from, to, moved,
    start > 0 and (" (resumed after " .. ("%d"):format(start) .. " bytes)") or ""))
end

function ops.get(s, a)
  local target = a.localpath or basename(a.remote)
  local start = a.resume and local_size(target .. ".part") or 0
  local bar, finish = progress.new(basename(a.remote), start)
  local moved, err = s:get(a.remote, target, { resume = a.resume or false, progress = bar })
  if bar then finish(moved and (start + moved) or nil) end
  check("get " .. a.remote, moved, err)
  done_line(a.remote, target, moved, start)
end

function ops.put(s, a)
  local remote = a.remote or basename(a.localpath)
  local start = 0
  if a.resume then
    local st = s:stat(remote .. ".part")
    start = st and st.size or 0
  end
  local bar, finish = progress.new(basename(a.localpath), start)
  local moved, err = s:put(a.localpath, remote, { resume = a.resume or false, progress = bar })
  if bar then finish(moved and (start + moved) or nil) end
  check("put " .. a.localpath, moved, err)
  done_line(a.localpath, remote, moved, start)
end

function ops.rm(s, a) check("rm " .. a.path, s:remove(a.path)) end
function ops.mkdir(s, a) check("mkdir " .. a.path, s:mkdir(a.path, { parents = a.parents or false })) end
function ops.mv(s, a) check("mv " .. a.from, s:rename(a.from, a.to, { overwrite = true })) end

--- Runs the command.
-- @tparam table a the parsed arguments (connkit.cli.args)
-- @treturn integer the exit status
function M.run(a)
  if a.resume and a.op ~= "get" and a.op ~= "put" then fail.usage("--resume is for get and put") end
  local c = context.account(a)
  if c.integration.auth ~= "sftp" then
    fail.usage(('sftp: the definition has auth = "%s", not "sftp"'):format(c.integration.auth))
  end
  local s, err = c.account:sftp()
  if not s then fail.error(err, "sftp") end
  local ok, e = pcall(ops[a.op], s, a)
  s:close()
  if not ok then error(e, 0) end
  return 0
end

return M
