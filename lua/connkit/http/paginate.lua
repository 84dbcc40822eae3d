--- Pagination: `account:pages(url, opts)` and `account:items(url, opts)`,
-- generic-for iterators over the pages of a paginated endpoint and over
-- the items in them. Each page is an ordinary request (the account's auth,
-- refresh and retry rules apply; a URL from a reply on another origin goes
-- without credentials, by the origin rule of connkit.http.request). A
-- failure comes as `false, err` once, then the loop ends. With a known total
-- (`page`/`offset` types), the pages after the first are fetched side by
-- side (`concurrency`) and still come in order.
-- @module connkit.http.paginate
local request = require "connkit.http.request"
require "connkit.http.attempt"  -- req:send()
require "connkit.http.async"    -- req:start()
local errors = require "connkit.errors"
local options = require "connkit.options"
local jsonpath = require "connkit.jsonpath"
local links = require "connkit.http.links"
local urls = require "connkit.http.url"
local settings = require "connkit.http.paginate_check"
local core = require "connkit.core"
local cjson = require "cjson.safe"

local M = {}

local null = cjson.null
local BODYLESS = { GET = true, HEAD = true }

-- The request options of one page: the call's, with the URL and the
-- pagination parameters of descriptor `d` ({ url, value, first, server }).
local function build(st, d)
  local cfg, o = st.cfg, {}
  for k, v in pairs(st.ropts) do o[k] = v end
  o.url = d.url
  if d.server then
    -- a URL from a reply carries its own query; its origin decides whether
    -- credentials go (auth = true was meant for the caller's origin only)
    o.query = nil
    if o.auth == true and urls.origin(d.url) ~= st.origin then o.auth = nil end
  end
  local extra = {}
  if d.value ~= nil then extra[cfg.param] = d.value end
  if cfg.limit_param and (d.first or not d.server) then extra[cfg.limit_param] = cfg.limit end
  if next(extra) then
    local where = cfg.param_in == "body" and "json" or "query"
    local t = {}
    for k, v in pairs(o[where] or {}) do t[k] = v end
    for k, v in pairs(extra) do t[k] = v end
    o[where] = t
  end
  return request.prepare(st.acct, o)
end

local function pagination_error(st, msg)
  return errors.new("pagination", st.acct:_redact(msg))
end

-- The item list of a decoded page, or nil when there is none where
-- pagination.items points (or, without it, the body is not an array).
local function items_of(cfg, doc)
  local v = doc
  if cfg.items then v = jsonpath.get(doc, cfg.items) end
  if v == null then return {} end
  if type(v) == "table" and (next(v) == nil or v[1] ~= nil) then return v end
  return nil
end

-- A scalar from a reply that names the next page: a non-empty string or a
-- number; nil (no next page) for absent, null, false and "".
local function next_value(st, v, field)
  if v == nil or v == null or v == false or v == "" then return nil end
  local t = type(v)
  if t ~= "string" and t ~= "number" then
    return nil, pagination_error(st, ("page %d: the value at pagination.%s '%s' is a %s, not a string")
      :format(st.n, field, tostring(st.cfg[field]), t == "userdata" and "null" or t))
  end
  return v
end

-- The page count a known total makes (on the first page), or nil, err.
local function page_count(st, doc, nitems)
  local cfg = st.cfg
  local field = cfg.total and "total" or "total_pages"
  local v = jsonpath.get(doc, cfg[field])
  local t = tonumber(v)
  if type(v) ~= "number" and type(v) ~= "string" or not t or t < 0 then
    return nil, pagination_error(st, ("the first page has no number at pagination.%s '%s'")
      :format(field, tostring(cfg[field])))
  end
  if field == "total_pages" then return math.floor(t) end
  local size = cfg.limit or nitems
  if size == 0 then return 1 end
  return math.ceil(t / size)
end

-- Keeps up to `concurrency` planned pages in flight.
local function fill(st)
  while #st.queue < st.cfg.concurrency and #st.todo > 0 do
    local d = table.remove(st.todo, 1)
    local req, err = build(st, d)
    st.queue[#st.queue + 1] = { d = d, req = req, err = err, handle = req and req:start() }
  end
end

-- Starts the pages after the first side by side: descriptors for pages
-- 2..N (at most max_pages in all; beyond, a max_pages error comes last).
local function plan_rest(st, d, nitems)
  local cfg = st.cfg
  local last = math.min(st.count, cfg.max_pages)
  local size = cfg.limit or nitems
  for i = 2, last do
    local value = cfg.type == "page" and (d.value + i - 1) or (d.value + (i - 1) * size)
    st.todo[#st.todo + 1] = { url = d.url, value = value, batch = true }
  end
  if st.count > cfg.max_pages then
    st.after = errors.new("max_pages", ("stopped after %d pages (pagination.max_pages); the total says %d")
      :format(cfg.max_pages, st.count), { pages = cfg.max_pages })
  end
  fill(st) -- (under way while the caller reads the first page)
end

-- What the reply `res` to descriptor `d` makes: the page (the response
-- with `number` and `items`) and the next descriptor in st.next, or nil, err.
local function process(st, req, d, res)
  local cfg = st.cfg
  if res.status < 200 or res.status > 299 then
    local text, cut = errors.excerpt(res.body or "", 80, st.acct._secrets)
    return request.fail(req, "http_status", ("page %d answered %d%s%s%s"):format(st.n, res.status,
      text ~= "" and ": " or "", (text:gsub("[%c\128-\255]", "?")), cut and "..." or ""), { status = res.status })
  end
  res.number = st.n
  local doc, err
  if cfg.type ~= "link" or cfg.items or st.want_items then
    doc, err = res:json()
    if doc == nil then return nil, err end
  elseif (res.headers["content-type"] or ""):find("json") then
    doc = res:json() -- (link pages need no JSON: page.items when there is)
  end
  local list = doc ~= nil and items_of(cfg, doc) or nil
  res.items = list
  local paged = cfg.type == "offset" or cfg.type == "page"
  if not list and (st.want_items or paged) then
    return nil, pagination_error(st, cfg.items
      and ("page %d has no list at pagination.items '%s'"):format(st.n, tostring(cfg.items))
      or ("page %d is not a JSON array: set pagination.items to the path of the items"):format(st.n))
  end
  if d.batch then return res end
  local here = rawget(req, "_url_noauth")
  local nxt
  if cfg.type == "cursor" then
    local c, cerr = next_value(st, jsonpath.get(doc, cfg.cursor), "cursor")
    if cerr then return nil, cerr end
    if c ~= nil then
      nxt = { url = d.url, value = c, key = "cursor " .. (type(c) == "number" and core.format_number(c) or c) }
    end
  elseif cfg.type == "next_url" or cfg.type == "link" then
    local u, uerr
    if cfg.type == "link" then u = links.find_rel(res.headers.link, "next")
    else u, uerr = next_value(st, jsonpath.get(doc, cfg.next_url), "next_url") end
    if uerr then return nil, uerr end
    if u ~= nil then
      -- braces escaped: a URL from a reply is no template to fill
      u = links.resolve(here, tostring(u)):gsub("{", "%%7B"):gsub("}", "%%7D")
      nxt = { url = u, server = true, key = "url " .. u }
    end
  else
    local k = #list
    if d.first and (cfg.total or cfg.total_pages) then
      local count, terr = page_count(st, doc, k)
      if not count then return nil, terr end
      st.count = count
      if cfg.concurrency > 1 and k > 0 then
        plan_rest(st, d, k)
        return res
      end
    end
    local more = k > 0 and not (cfg.limit and k < cfg.limit) and not (st.count and st.n >= st.count)
    if more then
      local value = cfg.type == "page" and d.value + 1 or d.value + k
      nxt = { url = d.url, value = value, key = cfg.type .. " " .. core.format_number(value) }
    end
  end
  st.next = nxt
  return res
end

-- Ends the loop: in-flight pages are cancelled.
local function close(st)
  st.over = true
  for _, q in ipairs(st.queue) do
    if q.handle then q.handle:cancel() end
  end
  st.queue, st.todo = {}, {}
end

local function failed(st, err)
  close(st)
  -- (the page whose request or reply failed; max_pages and loops say `pages`)
  if errors.is(err) and err.page == nil and err.pages == nil then err.page = st.n end
  return false, err
end

-- One step of the iterator: the next page, or false, err, or nil.
local function step(st)
  if st.over then return nil end
  local cfg = st.cfg
  local req, d, res, err
  if #st.queue > 0 or #st.todo > 0 then
    fill(st)
    local q = table.remove(st.queue, 1)
    fill(st)
    req, d, err = q.req, q.d, q.err
    if req then res, err = q.handle:result() end
  else
    d = st.next
    if not d then
      if st.after then return failed(st, st.after) end
      st.over = true
      return nil
    end
    if st.n >= cfg.max_pages then
      return failed(st, errors.new("max_pages", ("stopped after %d pages (pagination.max_pages): the last"
        .. " one names a next page"):format(cfg.max_pages), { pages = st.n }))
    end
    if st.seen[d.key] then
      local what = d.server and ("URL " .. urls.safe_url(d.url)) or d.key:match("^%S+")
      return failed(st, errors.new("pagination_loop", st.acct:_redact(("page %d names the same %s as an"
        .. " earlier page: stopped"):format(st.n, what)), { pages = st.n }))
    end
    st.seen[d.key] = true
    st.next = nil
    req, err = d.req, d.err
    if not req and not err then req, err = build(st, d) end
    if req then res, err = req:send() end
  end
  st.n = st.n + 1
  if not res then return failed(st, err) end
  local page, perr = process(st, req, d, res)
  if not page then return failed(st, perr) end
  return page
end

-- Closes the loop's in-flight pages when a Lua 5.4 generic for ends early
-- (the fourth value of the for; other versions ignore it).
local Closer = { __close = function(c) close(c.st) end }

local function start(acct, url, opts, who, want_items)
  if getmetatable(acct) ~= require("connkit.account").Account then
    options.raise(("%s: call it as account:%s(url, opts), with a colon"):format(who, who))
  end
  options.argument(who, "url", url, "string")
  if opts ~= nil and type(opts) ~= "table" then
    options.raise(("%s: options must be a table, not a %s"):format(who, type(opts)))
  end
  local function fail(field, why) options.raise(("%s: option '%s' %s"):format(who, field, why)) end
  local ropts = {}
  for k, v in pairs(opts or {}) do
    if k == "url" then fail("url", ("is given by the call itself: %s(url, opts)"):format(who)) end
    if k ~= "pagination" then ropts[k] = v end
  end
  local cfg = settings.call(fail, acct.integration.pagination, opts and opts.pagination)
  local method = type(ropts.method) == "string" and ropts.method:upper() or "GET"
  if cfg.param_in == "body" then
    if BODYLESS[method] then
      fail("pagination.param_in", ('is "body": give a method that sends one (method = "POST"), not %s'):format(method))
    end
    if ropts.body ~= nil or ropts.form ~= nil then
      fail("pagination.param_in", 'is "body": the body is JSON (option json), not body or form')
    end
    if ropts.json ~= nil and type(ropts.json) ~= "table" then
      fail("json", 'must be a table when pagination.param_in is "body"')
    end
  end
  local st = { acct = acct, cfg = cfg, ropts = ropts, n = 0, seen = {}, queue = {}, todo = {},
    want_items = want_items }
  local first = { url = url, value = cfg.start, first = true }
  -- prepared now: a wrong option raises at the caller's line, not in the loop
  first.req, first.err = build(st, first)
  first.key = "url " .. (first.req and rawget(first.req, "_url_noauth") or url)
  st.origin = first.req and urls.origin(rawget(first.req, "_url_noauth"))
  st.next = first
  return st
end

--- Iterates the pages of `url`: `for page, err in acct:pages(url, opts)`.
-- opts: every request option plus `pagination` (over the integration's).
-- page is the response, with `page.number` (1, 2, ...) and `page.items`.
-- @tparam connkit.account.Account acct the account
-- @tparam string url the first page's URL
-- @tparam[opt] table opts the request options and `pagination`
-- @return the iterator, nil, nil, and a closing value (Lua 5.4 closes the
--   loop's state with it)
-- @raise for a bad option, naming it
function M.pages(acct, url, opts)
  local st = start(acct, url, opts, "pages", false)
  return function() return step(st) end, nil, nil, setmetatable({ st = st }, Closer)
end

--- Iterates the items of every page: `for item, err in acct:items(url, opts)`.
-- @tparam connkit.account.Account acct the account
-- @tparam string url the first page's URL
-- @tparam[opt] table opts as for pages
-- @return the iterator (each step: an item, or false and an error once),
--   nil, nil, and a closing value
-- @raise for a bad option, naming it
function M.items(acct, url, opts)
  local st = start(acct, url, opts, "items", true)
  local list, i = nil, 0
  return function()
    while true do
      if list and i < #list then
        i = i + 1
        return list[i]
      end
      local page, err = step(st)
      if not page then return page, err end
      list, i = page.items, 0
    end
  end, nil, nil, setmetatable({ st = st }, Closer)
end

return M
