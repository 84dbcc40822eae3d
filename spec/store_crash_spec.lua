-- Crash loops for the token stores: a writer process puts records and
-- acknowledges each put, and is killed with SIGKILL at a random moment, 200
-- times (spec/support/crash_loop.lua). After every kill the store is
-- reopened: every record opens, none is torn, no acknowledged write is lost
-- (a record holds the last acknowledged value, or the write that was in
-- flight), and nothing the crash left behind stays once the store is
-- reopened. CRASH_SEED=n replays a run; the counts are printed.
local helpers = require "helpers"
local core = require "connkit.core"
local lfs = require "lfs"
local crash_loop = require "support.crash_loop"

local ROUNDS = tonumber(os.getenv("CRASH_ROUNDS")) or 200
local SEED = tonumber(os.getenv("CRASH_SEED"))

-- The file store's leftovers: temp files of writes cut short by the kill.
local function temp_files(dir)
  local names = {}
  for name in lfs.dir(dir) do
    if name:find("%.rec%.tmp%.") then names[#names + 1] = dir .. "/" .. name end
  end
  return names
end

-- The store removes a temp file when it opens the directory if no writer
-- holds it and it is old or its writer's PID is gone. The killed writers
-- here are unreaped children of this process (their PIDs still answer), so
-- their files are made an hour old: a restart long after the crash.
local function age(paths)
  local t = os.time() - 3600
  for _, path in ipairs(paths) do assert(lfs.touch(path, t, t)) end
end

describe("file store under kill -9", function()
  local stats
  local left = 0
  setup(function()
    local dir = helpers.tmpdir("crash-store")
    stats = crash_loop.run {
      store = "file", config = { dir = dir, key = core.b64encode(core.random(32)) },
      rounds = ROUNDS, seed = SEED,
      -- temp files appear when a kill cuts a put short, and stay: the sum of
      -- the new ones each round is what is left after the last reopen
      after_kill = function(config) age(temp_files(config.dir)) end,
      after_reopen = function(store)
        local n = #temp_files(store.dir)
        local new = n - left
        left = n
        return { temp_files_left = new }
      end,
    }
    io.stdout:write("\n", crash_loop.summary("file", stats), "\n")
    io.stdout:flush()
  end)

  it("was killed mid-stream: every round, with acknowledged writes", function()
    assert.equal(ROUNDS, stats.kills)
    assert.is_nil(stats.failures.writer, crash_loop.why(stats, "writer"))
    assert.is_true(stats.acks >= ROUNDS, ("only %d acknowledged writes"):format(stats.acks))
  end)

  it("opens every record after every kill, none torn", function()
    assert.equal(0, stats.unreadable, crash_loop.why(stats, "unreadable"))
    assert.equal(0, stats.torn, crash_loop.why(stats, "torn"))
  end)

  it("loses no acknowledged write", function()
    assert.equal(0, stats.lost, crash_loop.why(stats, "lost"))
  end)

  it("leaves no temp file once the store is reopened", function()
    assert.equal(0, stats.after.temp_files_left)
  end)
end)
