--- A game or event loop: requests start without blocking and connkit.poll(0)
-- drives them once per tick; the loop never waits for the network.
-- Run: lua examples/game_loop.lua BASE_URL
local connkit = require "connkit"
local core = require "connkit.core"

local scores = connkit.integration {
  name = "Scores", key = "scores", auth = "api_token", base_url = "{base}",
  parameters = { base = { required = true } },
}:account { parameters = { base = arg[1] or "http://127.0.0.1:8080" },
  credentials = { token = os.getenv("SCORES_TOKEN") or "demo" } }

local pending = {
  scores:prepare { url = "/delay/1" }:start(),                          -- a slow leaderboard
  scores:prepare { method = "POST", url = "/anything/score", json = { points = 42 } }:start(),
}
local frame = 0
while #pending > 0 do
  frame = frame + 1
  connkit.poll(0)                       -- never blocks
  for i = #pending, 1, -1 do
    local h = pending[i]
    if h:done() then
      local res, err = h:result()
      print(("frame %d: %s"):format(frame, res and res.status or err.code))
      table.remove(pending, i)
    end
  end
  core.sleep(1 / 60)                    -- render the frame here
end
print("frames rendered while waiting:", frame)
