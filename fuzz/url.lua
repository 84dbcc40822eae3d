-- Fuzz target: URL joining and origins (lua/connkit/http/url.lua join, origin,
-- is_absolute), with libcurl's own URL parser (curl_url) as the reference:
-- the origin connkit computes decides where credentials may go, the URL
-- libcurl parses decides where they do go.
-- Input: a base URL, a newline, a second URL (relative or absolute).
-- Oracles, for URLs libcurl reads as http(s):
--   two URLs of one origin by urls.origin are one origin (scheme, host,
--   port) for libcurl: credentials for one never go to another host;
--   joining a relative URL to a base never leaves the base's origin, by
--   connkit's account and by libcurl's.
-- With FUZZ_URL_STRICT=1, also: origin(u) is the very text libcurl's
-- scheme://host:port (lower case), which finds the harmless differences
-- too (an empty port, say), for review.
local urls = require "connkit.http.url"

-- scheme://host:port as libcurl reads u, or nil when it does not read it
-- as an http(s) URL.
local function curl_origin(u)
  local p = fuzz.curl_url(u)
  if not p or (p.scheme ~= "http" and p.scheme ~= "https") or not p.host then return nil end
  return (p.scheme .. "://" .. p.host .. ":" .. p.port):lower()
end

local STRICT = os.getenv("FUZZ_URL_STRICT") == "1"

local function check_origin(u)
  local want = curl_origin(u)
  if want == nil then return nil end
  local got = urls.origin(u)
  assert(not STRICT or got == want, ("origin(%q) is %s, libcurl reads %s"):format(u, tostring(got), want))
  return want
end

return function(data)
  local base, rel = data:match("^([^\n]*)\n(.*)$")
  if not base then return end
  local base_origin = check_origin(base)
  local rel_origin = check_origin(rel)
  if base_origin and rel_origin and urls.origin(base) and urls.origin(base) == urls.origin(rel) then
    assert(base_origin == rel_origin, ("%q and %q are one origin for connkit (%s), "
      .. "libcurl goes to %s and %s"):format(base, rel, urls.origin(base), base_origin, rel_origin))
  end
  if base_origin == nil or not urls.origin(base) or urls.is_absolute(rel) then return end
  -- (a base_url ends at its path: a query or fragment is not a base)
  if base:find("[?#]") then return end
  local joined = urls.join(base, rel)
  assert(joined:sub(1, #base) == base, "the join does not start with the base")
  assert(urls.origin(joined) == urls.origin(base),
    ("join(%q, %q) = %q leaves the origin"):format(base, rel, joined))
  local curl_joined = curl_origin(joined)
  assert(curl_joined == nil or curl_joined == base_origin,
    ("join(%q, %q) = %q: libcurl goes to %s, not %s"):format(base, rel, joined,
      tostring(curl_joined), base_origin))
end
