-- The writer of the crash loop (spec/support/crash_loop.lua), killed with
-- SIGKILL at a random moment. Usage:
--   lua crash_writer.lua <store name> <config JSON> <first n> <id,id,...>
-- Opens the store (spec/support/crash_stores.lua), prints "ready", then puts
-- write n, n+1, ... for ever, printing "ack <n>" once each put has returned
-- true: an acknowledged write. The checker reads those lines from the log.
local cjson = require "cjson"
local stores = require "support.crash_stores"
local rec = require "support.crash_record"

local name, config, n = arg[1], cjson.decode(arg[2]), tonumber(arg[3])
local ids = {}
for id in arg[4]:gmatch("[^,]+") do ids[#ids + 1] = id end
local store = stores.open(name, config)
local out = io.stdout
out:write("ready\n")
out:flush()
while true do
  local id = rec.id_of(ids, n)
  local ok, err = store.put(id, rec.record(id, n))
  if not ok then
    io.stderr:write("put ", n, " failed: ", tostring(err and err.code), "\n")
    os.exit(3)
  end
  -- one write(2) per line: a line in the log is a whole acknowledgement
  out:write("ack ", n, "\n")
  out:flush()
  n = n + 1
end
