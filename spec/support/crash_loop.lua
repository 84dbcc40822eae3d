--- The kill -9 loop for token stores: a writer process
-- (spec/support/crash_writer.lua) puts records and acknowledges each one,
-- and is killed with SIGKILL at a random moment; the store is then reopened
-- and every account's record checked. Over `rounds` rounds it counts:
--
-- - `unreadable`: get() returned an error (a torn or unauthenticated record);
-- - `torn`: get() returned a record that is not exactly one of the records
--   written (a mix of two writes, a cut one);
-- - `lost`: the record is older than the last acknowledged write to that
--   account (only the last acknowledged value, or the write in flight when
--   the kill came, may be there);
-- - `landed`: rounds whose write in flight when the kill came is there.
--
-- A store plugs in with an entry in spec/support/crash_stores.lua (opened
-- from a plain config table on both sides) and, when it has store-specific
-- leftovers to look for (the file store's temp files), `after_kill` and
-- `after_reopen` functions.
local rec = require "support.crash_record"

local M = {}

-- Process state from /proc: true once it is gone or a zombie.
local function exited(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return true end
  local stat = f:read("*a") or ""
  f:close()
  local state = stat:match("%) (%a)")
  return state == nil or state == "Z" or state == "X"
end

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

--- Runs the loop; returns the counts (see above) plus `rounds`, `kills`,
-- `acks`, `seconds`, `seed`, `after` (what after_reopen counted, summed) and
-- `failures` (kind -> list of messages: unreadable, torn, lost, and writer
-- for a writer that ended before its kill or skipped an acknowledgement;
-- empty when everything held).
-- @tparam table opts `store` (name in crash_stores), `config` (its config
--   table), `rounds` (200), `ids` (account ids), `max_delay` (seconds after
--   the writer is ready before the kill, uniform; default 0.02), `seed`,
--   `after_kill(config, stats)` (called once the writer is gone, before the
--   store is reopened), `after_reopen(store, stats)` -> table of counts to
--   add to stats.after
function M.run(opts)
  local helpers = require "helpers"
  local socket = require "socket"
  local cjson = require "cjson"
  local stores = require "support.crash_stores"
  local rounds = opts.rounds or 200
  local ids = opts.ids or { "alpha", "beta", "gamma" }
  local max_delay = opts.max_delay or 0.02
  local seed = opts.seed or os.time()
  math.randomseed(seed)
  local stats = { rounds = rounds, kills = 0, acks = 0, unreadable = 0, torn = 0, lost = 0,
    landed = 0, seed = seed, after = {}, failures = {} }
  local function fail(kind, fmt, ...)
    local list = stats.failures[kind] or {}
    stats.failures[kind] = list
    list[#list + 1] = fmt:format(...)
  end

  local logdir = helpers.tmpdir("crash-log")
  local writer = helpers.root .. "/spec/support/crash_writer.lua"
  local config = cjson.encode(opts.config)
  local expected = {} -- id -> the seq the record must hold at least (nil: none yet)
  local t0 = socket.gettime()
  for round = 1, rounds do
    local first = round * 1000000
    local log = ("%s/round%d.log"):format(logdir, round)
    local proc = helpers.spawn("crash-writer", ("%s %s %s %s %d %s"):format(helpers.lua,
      helpers.shell_quote(writer), helpers.shell_quote(opts.store), helpers.shell_quote(config), first,
      helpers.shell_quote(table.concat(ids, ","))), { env = helpers.child_env(), log = log })
    local deadline = socket.gettime() + 10
    while not (helpers.read_file(log) or ""):find("^ready\n") do
      if exited(proc.pid) or socket.gettime() > deadline then
        helpers.stop(proc)
        error(("crash loop: the writer did not start (round %d):\n%s"):format(round, helpers.read_file(log) or ""))
      end
      socket.sleep(0.001)
    end
    socket.sleep(math.random() * max_delay)
    if exited(proc.pid) then
      fail("writer", "round %d: the writer ended before the kill:\n%s", round, helpers.read_file(log) or "")
    end
    assert(helpers.execute("kill -9 " .. proc.pid))
    stats.kills = stats.kills + 1
    while not exited(proc.pid) do socket.sleep(0.001) end

    -- acknowledged writes: whole "ack n" lines (a line is one write(2))
    local last_ack = first - 1
    for n in (helpers.read_file(log) or ""):gmatch("ack (%d+)\n") do
      n = tonumber(n)
      if n ~= last_ack + 1 then fail("writer", "round %d: ack %d after ack %d", round, n, last_ack) end
      last_ack = n
      stats.acks = stats.acks + 1
      expected[rec.id_of(ids, n)] = n
    end
    local in_flight = last_ack + 1
    if opts.after_kill then opts.after_kill(opts.config, stats) end
    local store = stores.open(opts.store, opts.config)
    for _, id in ipairs(ids) do
      local got, err = store.get(id)
      if err then
        stats.unreadable = stats.unreadable + 1
        fail("unreadable", "round %d: account %s does not open: %s", round, id, tostring(err.code))
      elseif got == nil then
        if expected[id] then
          stats.lost = stats.lost + 1
          fail("lost", "round %d: account %s: record gone (acknowledged %d)", round, id, expected[id])
        end
      elseif type(got.seq) ~= "number" or not same(got, rec.record(id, got.seq)) then
        stats.torn = stats.torn + 1
        fail("torn", "round %d: account %s holds a record that was never written", round, id)
      elseif got.seq == in_flight and rec.id_of(ids, in_flight) == id then
        stats.landed = stats.landed + 1
        expected[id] = got.seq -- durable now: later rounds must not go back
      elseif got.seq ~= expected[id] then
        stats.lost = stats.lost + 1
        fail("lost", "round %d: account %s holds write %d, acknowledged %s", round, id, got.seq, tostring(expected[id]))
      end
    end
    if opts.after_reopen then
      for k, v in pairs(opts.after_reopen(store, stats) or {}) do stats.after[k] = (stats.after[k] or 0) + v end
    end
  end
  stats.seconds = socket.gettime() - t0
  helpers.execute("rm -rf " .. helpers.shell_quote(logdir))
  return stats
end

--- The failure messages of the given kinds, one a line (for assertions).
function M.why(stats, ...)
  local out = {}
  for _, kind in ipairs({ ... }) do
    for _, m in ipairs(stats.failures[kind] or {}) do out[#out + 1] = m end
  end
  return table.concat(out, "\n")
end

--- One line of the counts, for the spec's output.
function M.summary(name, s)
  local after = {}
  for k, v in pairs(s.after) do after[#after + 1] = ("%s=%d"):format(k, v) end
  table.sort(after)
  return ("crash loop (%s, seed %d): rounds=%d kills=%d acks=%d lost=%d torn=%d unreadable=%d landed=%d %s %.1f s")
    :format(name, s.seed, s.rounds, s.kills, s.acks, s.lost, s.torn, s.unreadable, s.landed,
      table.concat(after, " "), s.seconds)
end

return M
