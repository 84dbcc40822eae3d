--- Files in and out: a download streamed to a file (never held in memory),
-- a body streamed to a function, and a multipart upload.
--
--   FILES_BASE_URL=https://files.example.test FILES_DIR=/tmp lua examples/files.lua
--
-- (spec/files_spec.lua runs it against the scripted test peer, whose
-- /files/bytes?n=N serves N bytes and /files/upload describes an upload.)
local connkit = require "connkit"

local base = os.getenv("FILES_BASE_URL")
local dir = os.getenv("FILES_DIR") or "/tmp"
if base == nil or base == "" then
  io.stderr:write("examples/files.lua: set FILES_BASE_URL (the API's base URL) and run again\n")
  os.exit(2)
end

local api = connkit.integration { name = "Files API", key = "filesapi", auth = "none", base_url = base }
local acct = api:account {}

-- 1. A download to a file: written to report.bin.part, renamed to
-- report.bin only once the whole 2xx body is there; a failure keeps the
-- old report.bin. res.body is nil, res.size says how much arrived.
local path = dir .. "/report.bin"
local res, err = acct:get("/files/bytes?n=1048576", { output = path, timeout = 60 })
if not res then
  io.stderr:write("download failed: ", tostring(err), "\n")
  os.exit(1)
end
if res.status ~= 200 then
  io.stderr:write(("download refused: %d %s\n"):format(res.status, res.body)) -- an error page stays in memory
  os.exit(1)
end
print(("saved %d bytes to %s in %.3f s over HTTP/%s from %s"):format(res.size, path, res.time,
  res.http_version, res.url))

-- 2. The same body to a function, piece by piece (return false to stop).
local total = 0
res, err = acct:get("/files/bytes?n=1048576", { on_data = function(chunk)
  total = total + #chunk
end })
if not res then
  io.stderr:write("streaming failed: ", tostring(err), "\n")
  os.exit(1)
end
print(("streamed %d bytes through on_data"):format(total))

-- 3. A multipart/form-data upload: a value and a file (read as it is sent).
res, err = acct:post("/files/upload", { multipart = {
  { name = "note", value = "monthly report" },
  { name = "file", file = path, filename = "report.bin", type = "application/octet-stream" },
} })
if not res then
  io.stderr:write("upload failed: ", tostring(err), "\n")
  os.exit(1)
end
local sent = res:json()
print(("uploaded %d parts (%s)"):format(sent.parts and #sent.parts or 0, res.status))
