--- Runs the connkit command (bin/connkit) as a process for the CLI specs:
-- with the interpreter and build the specs run on, a private store and
-- config directory, stdout and stderr in files of their own.
--
--   local cli = require "support.cli"
--   local t = cli.new()                       -- a fresh HOME-like sandbox
--   local r = t:run("check def.json", { env = { TOK = "x" }, stdin = "..." })
--   r.status, r.stdout, r.stderr
--   t:tty("sftp ...", { input = "secret\n", delay = 1 }) -> transcript, status
--
-- Every output is kept (t.outputs) so a spec can scan all of it for secrets.
local helpers = require "helpers"
local q = helpers.shell_quote

local M = {}
local T = {}
T.__index = T

M.bin = helpers.root .. "/bin/connkit"
-- the build of the specs' run (build/lua5.4, build/luajit, build/lua5.4-asan)
M.build = package.cpath:match("([^;]*build/[^/;?]+)/%?%.so") or (helpers.root .. "/build/lua5.4")

--- A sandbox: its own XDG_DATA_HOME / XDG_CONFIG_HOME under a temp dir.
function M.new(tag)
  local dir = helpers.tmpdir(tag or "cli")
  return setmetatable({ dir = dir, outputs = {} }, T)
end

-- The environment words for a run.
function T:env_words(env)
  local all = helpers.child_env({ XDG_DATA_HOME = self.dir .. "/data", XDG_CONFIG_HOME = self.dir .. "/config",
    CONNKIT_BUILD = M.build, HOME = self.dir })
  for k, v in pairs(env or {}) do all[k] = v end
  local words = {}
  for k, v in pairs(all) do words[#words + 1] = k .. "=" .. q(v) end
  table.sort(words)
  return "env -u LUA_PATH -u LUA_CPATH -u CONNKIT_KEY -u CONNKIT_KEY_FILE -u BROWSER " .. table.concat(words, " ")
end

--- The command line that runs connkit with `args` (a shell-quoted string).
function T:command(args, env)
  return self:env_words(env) .. " " .. q(helpers.lua) .. " " .. q(M.bin) .. " " .. args
end

--- Runs connkit with `args`; returns { status, stdout, stderr }.
-- opts: env (table), stdin (string), secret_stdout (its stdout may hold a
-- token: left out of the secret scan).
function T:run(args, opts)
  opts = opts or {}
  local out, err, inp = self.dir .. "/stdout", self.dir .. "/stderr", self.dir .. "/stdin"
  helpers.write_file(inp, opts.stdin or "")
  local line = ("cd %s && %s < %s > %s 2> %s; echo $?"):format(q(opts.cwd or self.dir), self:command(args, opts.env),
    q(inp), q(out), q(err))
  local p = assert(io.popen(helpers.clean_env .. "sh -c " .. q(line)))
  local status = tonumber(p:read("*a"):match("(%d+)%s*$"))
  p:close()
  local r = { status = status, stdout = helpers.read_file(out) or "", stderr = helpers.read_file(err) or "" }
  self.outputs[#self.outputs + 1] = { args = args, stdout = opts.secret_stdout and "" or r.stdout, stderr = r.stderr }
  return r
end

--- Runs connkit inside a pseudo-terminal (script(1)): stdin, stdout and
-- stderr are the terminal. `input` is typed after `delay` seconds (so the
-- command has set the terminal up first). Returns the transcript and the
-- exit status.
function T:tty(args, opts)
  opts = opts or {}
  local feed = ("sleep %s; printf '%%s' %s; sleep %s"):format(opts.delay or 1, q(opts.input or ""), opts.linger or 1)
  -- script runs the command with $SHELL: /bin/sh (dash) here, whatever the
  -- caller's shell is, and a trap keeps it alive past a Ctrl-C sent to the
  -- terminal's process group (dash would die with the command, and the
  -- status after it never be seen); a trap, unlike an ignored signal, is not
  -- inherited by the command
  local inner = "trap : INT; " .. self:command(args, opts.env) .. "; echo __rc=$?"
  local line = ("cd %s && (%s) | SHELL=/bin/sh script -q -e -c %s /dev/null"):format(q(self.dir), feed, q(inner))
  local p = assert(io.popen(helpers.clean_env .. "sh -c " .. q(line) .. " 2>&1"))
  local transcript = p:read("*a")
  p:close()
  local status = tonumber(transcript:match("__rc=(%d+)"))
  transcript = transcript:gsub("__rc=%d+%s*", "")
  self.outputs[#self.outputs + 1] = { args = args, stdout = transcript, stderr = "" }
  return transcript, status
end

--- Writes `text` to a file in the sandbox; returns its path.
function T:file(name, text)
  local path = self.dir .. "/" .. name
  helpers.write_file(path, text)
  return path
end

--- The secrets in `list` that appear in any output so far, as "where: secret #i".
function T:leaks(list)
  local found = {}
  for _, o in ipairs(self.outputs) do
    for i, s in ipairs(list) do
      for _, where in ipairs({ "stdout", "stderr" }) do
        if s and #s >= 4 and o[where]:find(s, 1, true) then
          found[#found + 1] = ("%s of `connkit %s`: secret #%d"):format(where, o.args, i)
        end
      end
    end
  end
  return found
end

function T:cleanup() helpers.execute("rm -rf " .. q(self.dir)) end

return M
