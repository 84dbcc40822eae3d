--- The curl transport: the libcurl multi engine of csrc/http*.c (one per
-- Lua state; its multi handle is made on the first transfer in a process
-- and made again in a forked child, so connkit may be required before a
-- fork, e.g. in nginx's init_by_lua).
-- See connkit.transport for the interface every transport has.
-- @module connkit.transport.curl
local core = require "connkit.core"

local engine = core.engine()
local wire = core.wire

local M = { name = "curl", engine = engine }

--- Always usable.
-- @treturn boolean true
function M.available() return true end

--- What `perform` and `start` take for prepared request `req`: the wire
-- spec made when it was prepared (core.wire reads a request once).
-- @tparam connkit.http.request.Request req the request
-- @return the wire spec (userdata)
function M.of_request(req) return rawget(req, "_wire") end

--- What they take for a table with a request's fields (a redirect hop, a
-- token request, a request with less time left): its wire spec, or nil,
-- code, message when it cannot be sent.
M.of_table = wire

--- Performs a transfer and waits for it: response, or nil, code, message.
-- @param spec the wire spec
-- @treturn[1] connkit.http.response.Response the response
-- @return[2] nil
-- @treturn[2] string the error code
-- @treturn[2] string the message
function M.perform(spec) return engine:perform(spec) end

--- The same, bound to the engine: the request path's hot call.
M.performer = core.performer()

--- Starts a transfer: a transfer object (done(), result(), cancel()), or
-- nil, code, message.
-- @param spec the wire spec
-- @return[1] the transfer
-- @return[2] nil
-- @treturn[2] string the error code
-- @treturn[2] string the message
function M.start(spec) return engine:start(spec) end

--- Drives every transfer, waiting up to `timeout` seconds for activity:
-- how many finished.
-- @tparam[opt] number timeout seconds to wait (0 or nil: none)
-- @treturn integer how many finished
function M.poll(timeout) return engine:poll(timeout) end

--- How many transfers are in flight.
-- @treturn integer
function M.pending() return engine:pending() end

--- Sleeps (no transfer moves meanwhile; callers poll when some are pending).
M.sleep = core.sleep

--- Runs prepared requests (static auth, nothing to follow or retry) with
-- up to n in flight, in C (see engine:run).
-- @tparam table reqs the prepared requests
-- @tparam integer n the concurrency
-- @treturn table the results { { res =, err = }, ... } in input order
function M.run(reqs, n) return engine:run(reqs, n) end

return M
