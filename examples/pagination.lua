--- Pagination: the integration declares how its API pages once; calls
-- iterate pages or items, override a field when an endpoint differs, and
-- get a failure as (false, err) inside the loop.
-- Run: lua examples/pagination.lua BASE_URL
-- (the scripted test peer, spec/scripted/server.js, which serves /pages/*)
local connkit = require "connkit"

local api = connkit.integration {
  name = "Paged API", key = "paged", auth = "api_token",
  base_url = "{base}",
  parameters = { base = { required = true } },
  -- the default for every call: a cursor API with the items under "data"
  pagination = { type = "cursor", cursor = "meta.next_cursor", items = "data", max_pages = 100 },
}
local acct = api:account {
  parameters = { base = arg[1] or "http://127.0.0.1:8080" },
  credentials = { token = os.getenv("PAGED_TOKEN") or "demo-token" },
}

-- 1. every item of every page (the integration's cursor pagination)
local ids = {}
for contact, err in acct:items("/pages/cursor", { query = { n = 25 } }) do
  if contact == false then error(err) end -- a failure comes once, then the loop ends
  ids[#ids + 1] = math.floor(contact.id)
end
print(("contacts: %d (ids %d..%d)"):format(#ids, ids[1], ids[#ids]))

-- 2. page by page, on an endpoint that pages by number and says how many
--    pages there are: the rest is fetched four at a time, still in order
for page, err in acct:pages("/pages/page", { query = { n = 25 }, pagination = {
    type = "page", items = "data", total_pages = "meta.total_pages",
    limit_param = "per_page", limit = 10, concurrency = 4 } }) do
  if page == false then error(err) end
  print(("page %d: %d items"):format(page.number, #page.items))
end

-- 3. a limit reached is a failure too, with its own code
for page, err in acct:pages("/pages/cursor", { query = { n = 25, size = 5 }, pagination = { max_pages = 2 } }) do
  if page == false then
    print(("stopped: %s (%s)"):format(err.code, err.message))
    break
  end
end
