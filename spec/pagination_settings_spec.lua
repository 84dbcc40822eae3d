-- Pagination settings (issue 13, point 1): the integration's pagination
-- checked once, a call's own merged over it and checked before any request,
-- errors naming the field. The merge is seen working against the scripted
-- peer's /pages/* routes (spec/scripted/routes/pages.js).
local helpers = require "helpers"
local connkit = require "connkit"

local function raises(pattern, f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.matches(pattern, tostring(err), 1, true)
  return tostring(err)
end

describe("pagination", function()
  local scripted

  setup(function()
    scripted = helpers.peer("scripted")
  end)

  local function account(pagination)
    return connkit.integration { name = "Pages", key = "pages", auth = "api_token", base_url = scripted.url,
      pagination = pagination }:account { credentials = { token = "pages-settings-token" } }
  end

  local function count(path, mark)
    local n = 0
    for _, r in ipairs(scripted.requests(path)) do
      if r.query.mark == mark then n = n + 1 end
    end
    return n
  end

  describe("settings", function()
    it("a call's pagination overrides the integration's field by field, or wholly with another type", function()
      local mark = ("pgset%d"):format(math.random(100000, 999999))
      local acct = account({ type = "cursor", cursor = "wrong.path", items = "data" })
      local pages = {}
      for page, err in acct:pages("/pages/cursor", { query = { mark = mark },
          pagination = { cursor = "meta.next_cursor" } }) do
        assert.is_not_false(page, tostring(err))
        pages[#pages + 1] = page
      end
      assert.are.equal(3, #pages)
      assert.are.equal(3, count("/pages/cursor", mark))
      assert.are.equal(10, #pages[1].items) -- items = "data" from the integration
      local items = {}
      for item in acct:items("/pages/offset", { query = { mark = mark },
          pagination = { type = "offset", items = "results", limit = 10 } }) do
        items[#items + 1] = item
      end
      assert.are.equal(25, #items)
      assert.are.equal(3, count("/pages/offset", mark))
    end)

    it("a bad definition raises naming the pagination field", function()
      local function def(p) return function() account(p) end end
      raises("integration 'pages': pagination.type must be one of", def({ type = "cursors" }))
      raises("pagination.cursor is required with type = \"cursor\"", def({ type = "cursor" }))
      raises("pagination.items is not a JSON path: has an empty name", def({ items = "data..x" }))
      raises("pagination.limit_param needs pagination.limit", def({ type = "offset", limit_param = "n" }))
      raises("pagination.concurrency needs pagination.total", def({ type = "page", concurrency = 4 }))
      raises("pagination.cursor is not used with type = \"page\"", def({ type = "page", cursor = "x" }))
      raises("pagination.max_pages must be a whole number of at least 1", def({ max_pages = 0 }))
      raises("pagination.bogus is not a known field", def({ bogus = 1 }))
    end)

    it("a bad call raises at the caller's line naming the option", function()
      local acct = account(nil)
      local msg = raises("pages: option 'pagination.next_url' is required", function()
        acct:pages("/pages/next", { pagination = { type = "next_url" } })
      end)
      assert.matches("pagination_settings_spec.lua:%d+:", msg)
      raises("items: option 'pagination' is required", function() acct:items("/x") end)
      raises("pages: option 'pagination.param_in' is \"body\": give a method", function()
        acct:pages("/x", { pagination = { type = "cursor", cursor = "c", param_in = "body" } })
      end)
      raises("request: unknown option 'qeury'", function()
        acct:pages("/x", { qeury = {}, pagination = { type = "link" } })
      end)
      raises("pages: option 'url' is given by the call itself", function()
        acct:pages("/x", { url = "/y", pagination = { type = "link" } })
      end)
      raises("call it as account:pages(url, opts), with a colon", function() acct.pages("/x") end)
    end)
  end)

end)
