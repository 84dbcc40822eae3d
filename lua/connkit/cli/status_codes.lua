--- The connkit command's exit statuses: one table from err.code to the
-- status, documented in README.md ("The connkit command", Exit status).
-- Transfer failures use curl's numbers (what `curl -f` users script
-- against); connkit's own failures have their own.
-- @module connkit.cli.status_codes
local M = {}

M.OK = 0
M.USAGE = 1        -- bad arguments, a bad definition, a missing credential
M.OTHER = 2        -- a connkit error without a number of its own
M.HTTP = 22        -- the server answered, with a status that is not 2xx
M.INTERRUPTED = 130 -- Ctrl-C (128 + SIGINT)
M.INTERNAL = 70    -- a bug in the command (a traceback is printed)

--- err.code -> exit status.
M.BY_CODE = {
  url = 3, dns = 6, connect = 7, protocol = 8, timeout = 28, tls = 35,
  too_many_redirects = 47, network = 56, too_large = 63,
  -- the request could not be made as given
  template = 1, header = 1, config = 1,
  -- not (or no longer) authorized: run `connkit login`
  reauthorize = 4, no_token = 4,
  -- credentials or the authorization refused (curl: 67 login denied)
  auth = 67, invalid_client = 67, invalid_grant = 67, unauthorized_client = 67,
  access_denied = 67, invalid_scope = 67, invalid_request = 67, oauth_error = 67,
  token_endpoint = 67, expired_token = 67, state_mismatch = 67, issuer_mismatch = 67,
  -- the token store
  store = 5, store_auth = 5, store_corrupt = 5, io = 5, lock_timeout = 5, lock_busy = 5, lock_lost = 5,
  -- SFTP (curl's numbers for SSH)
  host_key_unknown = 60, host_key_mismatch = 60, negotiation = 79, failure = 79,
  no_such_file = 78, permission_denied = 9, local_io = 23,
}

--- The exit status for a connkit error.
-- @param err the error
-- @treturn integer the exit status
function M.for_error(err)
  local code = type(err) == "table" and err.code
  return M.BY_CODE[code] or M.OTHER
end

return M
