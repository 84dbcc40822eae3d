-- Pagination inside a worker (spec/nginx_pages_spec.lua): account:pages
-- over the transport connkit picks there, against the scripted peer's
-- /pages/* routes (args.base). args.kind: "cursor" (a cursor API, then
-- items() over it), "concurrent" (page numbers with a known total, four at
-- a time, each page args.delay seconds late), "other" (a next URL on
-- another origin, args.other), "fail" (page 2 answers 500).
local connkit = require "connkit"

return function(args)
  local acct = connkit.integration {
    name = "NGX pages", key = "ngxpages", auth = "api_token", base_url = args.base,
    pagination = { type = "cursor", cursor = "meta.next_cursor", items = "data" },
  }:account { id = args.mark, credentials = { token = "tok-" .. args.mark } }
  local path, opts = "/pages/cursor", { query = { mark = args.mark } }
  if args.kind == "concurrent" then
    path = "/pages/page"
    opts.query.delay = args.delay
    opts.pagination = { type = "page", items = "data", total_pages = "meta.total_pages",
      limit_param = "per_page", limit = 5, concurrency = 4 }
  elseif args.kind == "other" then
    path = "/pages/next"
    opts.query.other, opts.query.other_at = args.other, 1
    opts.pagination = { type = "next_url", next_url = "links.next", items = "items" }
  elseif args.kind == "fail" then
    opts.query.fail_at = 2
  end
  local out = { transport = connkit.transport(), pages = {} }
  ngx.update_time()
  local t0 = ngx.now()
  local calls = 0
  local iter = acct:pages(path, opts)
  while true do
    local page, err = iter()
    calls = calls + 1
    if page == nil then break end
    if page == false then
      out.err = { code = err.code, status = err.status, page = err.page }
    else
      local items = page.items or {}
      out.pages[#out.pages + 1] = { number = page.number, status = page.status, count = #items,
        first = items[1] and items[1].id, body = args.kind == "other" and page.number == 2 and page.body or nil }
    end
    if calls > 50 then break end
  end
  out.calls = calls
  ngx.update_time()
  out.elapsed = ngx.now() - t0
  if args.kind == "cursor" then
    out.items = 0
    for item, err in acct:items(path, opts) do
      if item == false then out.items_err = err.code break end
      out.items = out.items + 1
    end
  end
  return out
end
