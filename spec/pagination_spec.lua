-- Pagination (issue 13, point 1): account:pages and account:items against
-- the scripted peer's paginated routes (spec/scripted/routes/pages.js) and
-- httpbin as another origin. Every test asserts on what the peers received:
-- the paging parameters, the number of requests, the Authorization header.
local helpers = require "helpers"
local connkit = require "connkit"
local cjson = require "cjson"

local TOKEN = "pages-secret-token-1234"

local marks = 0
local function new_mark()
  marks = marks + 1
  return ("pg%d_%d"):format(marks, math.random(100000, 999999))
end

describe("pagination", function()
  local scripted, hb

  setup(function()
    scripted = helpers.peer("scripted")
    hb = helpers.peer("httpbin")
  end)

  local function account(pagination, extra)
    local def = { name = "Pages", key = "pages", auth = "api_token", base_url = scripted.url,
      pagination = pagination }
    for k, v in pairs(extra or {}) do def[k] = v end
    return connkit.integration(def):account { credentials = { token = TOKEN } }
  end

  -- what the peer received at `path` for this mark, oldest first
  local function received(path, mark)
    local out = {}
    for _, r in ipairs(scripted.requests(path)) do
      if r.query.mark == mark or (r.json and r.json.mark == mark) then out[#out + 1] = r end
    end
    return out
  end

  -- every page (or the first failure) of an iterator
  local function collect(iter, s, c)
    local pages, failure = {}, nil
    for page, err in iter, s, c do
      if page == false then failure = err; break end
      pages[#pages + 1] = page
    end
    return pages, failure
  end

  local function ids(list)
    local out = {}
    for i, item in ipairs(list) do out[i] = math.floor(item.id) end
    return out
  end

  local function range(a, b)
    local out = {}
    for i = a, b do out[#out + 1] = i end
    return out
  end

  local CURSOR = { type = "cursor", cursor = "meta.next_cursor", items = "data" }

  describe("cursor", function()
    it("sends each next cursor in the query, with the token, until the cursor is null", function()
      local mark = new_mark()
      local acct = account(CURSOR)
      local pages, err = collect(acct:pages("/pages/cursor", { query = { mark = mark } }))
      assert.is_nil(err)
      assert.are.equal(3, #pages)
      for i, p in ipairs(pages) do assert.are.equal(i, p.number) end
      assert.are.same(range(21, 25), ids(pages[3].items))
      local got = received("/pages/cursor", mark)
      assert.are.equal(3, #got)
      assert.is_nil(got[1].query.cursor)
      assert.are.equal("c10", got[2].query.cursor)
      assert.are.equal("c20", got[3].query.cursor)
      for _, r in ipairs(got) do assert.is_true(r.headers.authorization == "Bearer " .. TOKEN) end
    end)

    it("carries the cursor and the limit in a JSON POST body with param_in = \"body\"", function()
      local mark = new_mark()
      local acct = account(nil)
      local items = {}
      for item, err in acct:items("/pages/cursor", { method = "POST", json = { mark = mark },
          pagination = { type = "cursor", cursor = "meta.next_cursor", items = "data", param_in = "body",
            limit_param = "limit", limit = 12 } }) do
        assert.is_not_false(item, tostring(err))
        items[#items + 1] = item
      end
      assert.are.same(range(1, 25), ids(items))
      local got = received("/pages/cursor", mark)
      assert.are.equal(3, #got)
      for i, r in ipairs(got) do
        assert.are.equal("POST", r.method)
        assert.are.equal(12, r.json.limit)
        if i == 1 then assert.is_nil(r.json.cursor) else assert.are.equal("c" .. (i - 1) * 12, r.json.cursor) end
        assert.is_nil(r.query.cursor)
      end
    end)

    it("items() flattens every page's items, in order", function()
      local mark = new_mark()
      local acct = account(CURSOR)
      local items = {}
      for item, err in acct:items("/pages/cursor", { query = { mark = mark, n = 33, size = 4 } }) do
        assert.is_not_false(item, tostring(err))
        items[#items + 1] = item
      end
      assert.are.same(range(1, 33), ids(items))
      assert.are.equal(9, #received("/pages/cursor", mark))
    end)
  end)

  describe("next_url", function()
    local NEXT = { type = "next_url", next_url = "links.next", items = "items" }

    for _, form in ipairs({ "abs", "path", "query", "dot" }) do
      it("follows a next URL written " .. form .. " (resolved against the page's URL)", function()
        local mark = new_mark()
        local acct = account(NEXT)
        local items = {}
        for item, err in acct:items("/pages/next", { query = { mark = mark, form = form } }) do
          assert.is_not_false(item, tostring(err))
          items[#items + 1] = item
        end
        assert.are.same(range(1, 25), ids(items))
        local got = received("/pages/next", mark)
        assert.are.equal(3, #got)
        assert.are.equal("10", got[2].query.after)
        assert.are.equal("20", got[3].query.after)
        for _, r in ipairs(got) do assert.is_true(r.headers.authorization == "Bearer " .. TOKEN) end
      end)
    end

    it("follows a next URL on another origin without the credentials, even with auth = true", function()
      local mark = new_mark()
      local acct = account(NEXT)
      local other = hb.url .. "/anything/pages?mark=" .. mark
      local pages, err = collect(acct:pages("/pages/next", { auth = true,
        query = { mark = mark, other = other, other_at = 1 } }))
      assert.is_nil(err)
      assert.are.equal(2, #pages)
      -- httpbin echoes what it received: no Authorization
      local echo = assert(pages[2]:json())
      assert.are.equal(hb.url .. "/anything/pages?mark=" .. mark, echo.url)
      assert.is_nil(echo.headers.Authorization)
      for _, v in pairs(echo.headers) do assert.is_nil(tostring(v):find(TOKEN, 1, true)) end
      -- while the API's own origin got it
      local got = received("/pages/next", mark)
      assert.are.equal(1, #got)
      assert.is_true(got[1].headers.authorization == "Bearer " .. TOKEN)
    end)

    it("never fills {placeholders} in a URL taken from a reply", function()
      local mark = new_mark()
      local acct = account(NEXT)
      local pages, err = collect(acct:pages("/pages/next", { query = { mark = mark, other_at = 1,
        other = "/pages/next?mark=" .. mark .. "&leak={token}&n=0" } }))
      assert.is_nil(err)
      assert.are.equal(2, #pages)
      local got = received("/pages/next", mark)
      assert.are.equal(2, #got)
      assert.are.equal("{token}", got[2].query.leak)
    end)

    it("stops with pagination_loop when a next URL comes back", function()
      local mark = new_mark()
      local acct = account(NEXT)
      local pages, err = collect(acct:pages("/pages/next", { query = { mark = mark, loop_at = 2 } }))
      assert.is_truthy(err)
      assert.are.equal("pagination_loop", err.code)
      assert.is_true(#pages == 2 or #pages == 3, #pages)
      assert.are.equal(#pages, #received("/pages/next", mark))
    end)
  end)

  describe("link", function()
    for _, form in ipairs({ "abs", "path", "query" }) do
      it("follows Link rel=\"next\" written " .. form .. "; a bare JSON array is the items", function()
        local mark = new_mark()
        local acct = account({ type = "link" })
        local pages, err = collect(acct:pages("/pages/link", { query = { mark = mark, form = form, size = 7 } }))
        assert.is_nil(err)
        assert.are.equal(4, #pages)
        assert.are.same(range(22, 25), ids(pages[4].items))
        local got = received("/pages/link", mark)
        assert.are.equal(4, #got)
        for i, r in ipairs(got) do
          if i == 1 then assert.is_nil(r.query.page) else assert.are.equal(tostring(i), r.query.page) end
          assert.is_true(r.headers.authorization == "Bearer " .. TOKEN)
        end
      end)
    end

    it("follows a Link to another origin without the credentials", function()
      local mark = new_mark()
      local acct = account({ type = "link" })
      local pages, err = collect(acct:pages("/pages/link", { query = { mark = mark,
        other = hb.url .. "/anything/linked", other_at = 1 } }))
      assert.is_nil(err)
      assert.are.equal(2, #pages)
      local echo = assert(pages[2]:json())
      assert.are.equal(hb.url .. "/anything/linked", echo.url)
      assert.is_nil(echo.headers.Authorization)
      assert.is_true(received("/pages/link", mark)[1].headers.authorization == "Bearer " .. TOKEN)
    end)
  end)

  describe("offset and page", function()
    it("offset: sends offset and limit, stops on a short page", function()
      local mark = new_mark()
      local acct = account({ type = "offset", items = "results", limit_param = "limit", limit = 7 })
      local items = {}
      for item, err in acct:items("/pages/offset", { query = { mark = mark } }) do
        assert.is_not_false(item, tostring(err))
        items[#items + 1] = item
      end
      assert.are.same(range(1, 25), ids(items))
      local got = received("/pages/offset", mark)
      assert.are.equal(4, #got)
      for i, r in ipairs(got) do
        assert.are.equal(tostring((i - 1) * 7), r.query.offset)
        assert.are.equal("7", r.query.limit)
      end
    end)

    it("offset: starts at `start` and stops on an empty page", function()
      local mark = new_mark()
      local acct = account({ type = "offset", items = "results", start = 5 })
      local pages, err = collect(acct:pages("/pages/offset", { query = { mark = mark, n = 25 } }))
      assert.is_nil(err)
      -- items 6..15, 16..25, then an empty page (no limit: only an empty page ends it)
      assert.are.equal(3, #pages)
      assert.are.same(range(6, 15), ids(pages[1].items))
      assert.are.equal(0, #pages[3].items)
      local got = received("/pages/offset", mark)
      assert.are.equal(3, #got)
      assert.are.same({ "5", "15", "25" }, { got[1].query.offset, got[2].query.offset, got[3].query.offset })
    end)

    it("page: a 200 with a bare JSON array, page numbers in `param`", function()
      local mark = new_mark()
      local acct = account(nil)
      local items = {}
      for item, err in acct:items("/pages/page", { query = { mark = mark, shape = "array" },
          pagination = { type = "page", limit_param = "per_page", limit = 10 } }) do
        assert.is_not_false(item, tostring(err))
        items[#items + 1] = item
      end
      assert.are.same(range(1, 25), ids(items))
      local got = received("/pages/page", mark)
      assert.are.same({ "1", "2", "3" }, { got[1].query.page, got[2].query.page, got[3].query.page })
      assert.are.equal(3, #got)
    end)

    it("page with total_pages and concurrency: the rest side by side, yielded in order", function()
      local mark = new_mark()
      local acct = account({ type = "page", items = "data", total_pages = "meta.total_pages",
        limit_param = "per_page", limit = 5, concurrency = 4 })
      local t0 = require("socket").gettime()
      local pages, err = collect(acct:pages("/pages/page", { query = { mark = mark, delay = 0.5 } }))
      local elapsed = require("socket").gettime() - t0
      assert.is_nil(err)
      assert.are.equal(5, #pages)
      for i, p in ipairs(pages) do
        assert.are.equal(i, p.number)
        assert.are.equal((i - 1) * 5 + 1, math.floor(p.items[1].id))
      end
      local got = received("/pages/page", mark)
      assert.are.equal(5, #got)
      local first, later = got[1].time, {}
      for i = 2, 5 do later[#later + 1] = got[i].time end
      table.sort(later)
      -- pages 2..5 were all asked for after page 1 came, before any of them came back
      assert.is_true(later[1] - first >= 0.45, cjson.encode(later))
      assert.is_true(later[4] - later[1] < 0.45, cjson.encode(later))
      local pagenums = {}
      for i = 1, 5 do pagenums[i] = tonumber(got[i].query.page) end
      table.sort(pagenums)
      assert.are.same(range(1, 5), pagenums)
      assert.is_true(elapsed < 2.0, elapsed) -- one after another would take 2.5 s
    end)

    it("a loop left with break cancels the pages still in flight (Lua 5.4: the for's closing value)", function()
      if _VERSION ~= "Lua 5.4" then
        pending("the generic for closes its fourth value on Lua 5.4 only")
        return
      end
      local curl = require("connkit.transport").curl
      local mark = new_mark()
      local acct = account({ type = "page", items = "data", total_pages = "meta.total_pages",
        limit_param = "per_page", limit = 5, concurrency = 4 })
      local seen = 0
      for page in acct:pages("/pages/page", { query = { mark = mark, delay = 0.3 } }) do
        seen = seen + 1
        assert.are.equal(4, curl.pending()) -- pages 2..5 under way
        if page.number == 1 then break end
      end
      assert.are.equal(1, seen)
      assert.are.equal(0, curl.pending())
    end)

    it("offset with an item total and concurrency, capped by max_pages", function()
      local mark = new_mark()
      local acct = account({ type = "offset", items = "results", total = "total", limit_param = "limit",
        limit = 4, concurrency = 3, max_pages = 4 })
      local pages, err = collect(acct:pages("/pages/offset", { query = { mark = mark, n = 30 } }))
      assert.are.equal(4, #pages)
      assert.are.equal("max_pages", err and err.code)
      local offsets = {}
      for _, r in ipairs(received("/pages/offset", mark)) do offsets[#offsets + 1] = tonumber(r.query.offset) end
      table.sort(offsets)
      assert.are.same({ 0, 4, 8, 12 }, offsets)
    end)
  end)

  describe("limits and failures", function()
    it("a failure mid-way: (false, err) once with the status, then the loop ends", function()
      local mark = new_mark()
      local acct = account(CURSOR)
      local iter = acct:pages("/pages/cursor", { query = { mark = mark, fail_at = 2, fail_status = 503 } })
      local p1 = iter()
      assert.are.equal(1, p1.number)
      local ok, err = iter()
      assert.is_false(ok)
      assert.are.equal("http_status", err.code)
      assert.are.equal(503, err.status)
      assert.are.equal(2, err.page)
      assert.matches("page 2 answered 503", err.message, 1, true)
      assert.is_nil(err.message:find(TOKEN, 1, true))
      assert.is_nil(iter())
      assert.is_nil(iter())
      assert.are.equal(2, #received("/pages/cursor", mark))
    end)

    it("a non-2xx page quotes the body with the account's secrets scrubbed", function()
      local acct = account(CURSOR)
      local pages, err = collect(acct:pages("/token/echo", { query = { mode = "body", field = "v", v = TOKEN } }))
      assert.are.equal(0, #pages)
      assert.are.equal("http_status", err.code)
      assert.are.equal(503, err.status)
      assert.matches("page 1 answered 503: *** (echoed)", err.message, 1, true)
      assert.is_nil(err.message:find(TOKEN, 1, true))
      -- the peer did get the token (echoed it): scrubbing, not absence, kept it out
      local last = scripted.last("/token/echo")
      assert.are.equal(TOKEN, last.query.v)
    end)

    it("a cursor seen twice: pagination_loop", function()
      local mark = new_mark()
      local acct = account(CURSOR)
      local pages, err = collect(acct:pages("/pages/cursor", { query = { mark = mark, loop_at = 2 } }))
      assert.are.equal(2, #pages)
      assert.are.equal("pagination_loop", err.code)
      assert.are.equal(2, #received("/pages/cursor", mark))
    end)

    it("max_pages: the pages up to it, then (false, err) with code max_pages", function()
      local mark = new_mark()
      local acct = account(CURSOR)
      local pages, err = collect(acct:pages("/pages/cursor", { query = { mark = mark, size = 2 },
        pagination = { max_pages = 3 } }))
      assert.are.equal(3, #pages)
      assert.are.equal("max_pages", err.code)
      assert.are.equal(3, #received("/pages/cursor", mark))
    end)

    it("a page that is not what items points at: code pagination", function()
      local mark = new_mark()
      local acct = account({ type = "cursor", cursor = "meta.next_cursor", items = "nothing.here" })
      local n, failure = 0, nil
      for item, err in acct:items("/pages/cursor", { query = { mark = mark } }) do
        if item == false then failure = err break end
        n = n + 1
      end
      assert.are.equal(0, n)
      assert.are.equal("pagination", failure.code)
      assert.matches("pagination.items 'nothing.here'", failure.message, 1, true)
      assert.are.equal(1, #received("/pages/cursor", mark))
    end)
  end)

  it("examples/pagination.lua runs against the scripted peer", function()
    local ok, out = helpers.run_example("pagination.lua", { scripted.url })
    assert.is_true(ok, out)
    assert.matches("contacts: 25 %(ids 1%.%.25%)", out)
    assert.matches("page 3: 5 items", out)
    assert.matches("stopped: max_pages", out)
  end)
end)
