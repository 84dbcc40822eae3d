-- Pagination inside nginx (issue 13, point 1): account:pages and items in a
-- worker of Debian's nginx with its Lua module (spec/peers/openresty.lua),
-- over the ngx transport, against the scripted peer's /pages/* routes.
-- Scenario: spec/nginx/pages_run.lua. Every test asserts on what the peers
-- received.
local helpers = require "helpers"
local openresty = require "peers.openresty"
local cjson = require "cjson"

-- a second origin inside the same nginx: echoes the request's headers
local ECHO = [[
    location = /echo {
      default_type application/json;
      content_by_lua_block { ngx.say(require("cjson").encode({ headers = ngx.req.get_headers() })) }
    }
]]

describe("pagination inside nginx", function()
  local p, scripted

  lazy_setup(function()
    scripted = helpers.peer("scripted")
    p = openresty.start(helpers, { workers = 1, servers = { other = ECHO } })
  end)
  lazy_teardown(function()
    if p then p.stop() end
  end)

  local marks = 0
  local function new_mark()
    marks = marks + 1
    return ("ngxpg%d_%d"):format(marks, math.random(100000, 999999))
  end

  local function received(path, mark)
    local out = {}
    for _, r in ipairs(scripted.requests(path)) do
      if r.query.mark == mark then out[#out + 1] = r end
    end
    return out
  end

  it("a cursor API: every page over the ngx transport, the cursors and the token as the peer got them", function()
    local mark = new_mark()
    local r = p:run("pages_run", { kind = "cursor", base = scripted.url, mark = mark })
    assert.are.equal("ngx", r.transport)
    assert.are.equal(3, #r.pages, cjson.encode(r))
    assert.is_nil(r.err)
    assert.are.equal(25, r.items)
    local got = received("/pages/cursor", mark)
    assert.are.equal(6, #got) -- pages(), then items()
    assert.is_nil(got[1].query.cursor)
    assert.are.equal("c10", got[2].query.cursor)
    assert.are.equal("c20", got[3].query.cursor)
    for _, g in ipairs(got) do assert.are.equal("Bearer tok-" .. mark, g.headers.authorization) end
  end)

  it("pages with a known total are fetched side by side in light threads, yielded in order", function()
    local mark = new_mark()
    local r = p:run("pages_run", { kind = "concurrent", base = scripted.url, mark = mark, delay = 0.5 })
    assert.are.equal("ngx", r.transport)
    assert.is_nil(r.err, cjson.encode(r))
    assert.are.equal(5, #r.pages)
    for i, pg in ipairs(r.pages) do
      assert.are.equal(i, pg.number)
      assert.are.equal((i - 1) * 5 + 1, pg.first)
    end
    local got = received("/pages/page", mark)
    assert.are.equal(5, #got)
    local times = {}
    for i = 2, 5 do times[#times + 1] = got[i].time end
    table.sort(times)
    assert.is_true(times[1] - got[1].time >= 0.45, cjson.encode(times))
    assert.is_true(times[4] - times[1] < 0.45, cjson.encode(times)) -- all four in flight at once
    assert.is_true(r.elapsed < 2.0, r.elapsed)                      -- one after another: 2.5 s
  end)

  it("a next URL on another origin is followed without the credentials", function()
    local mark = new_mark()
    local r = p:run("pages_run", { kind = "other", base = scripted.url, mark = mark,
      other = p.servers.other.url .. "/echo" })
    assert.is_nil(r.err, cjson.encode(r))
    assert.are.equal(2, #r.pages)
    local echo = cjson.decode(r.pages[2].body)
    assert.is_nil(echo.headers.authorization)
    assert.are.equal("Bearer tok-" .. mark, received("/pages/next", mark)[1].headers.authorization)
  end)

  it("a failure mid-way comes once as (false, err), then the loop ends", function()
    local mark = new_mark()
    local r = p:run("pages_run", { kind = "fail", base = scripted.url, mark = mark })
    assert.are.equal(1, #r.pages)
    assert.are.same({ code = "http_status", status = 500, page = 2 }, r.err)
    assert.are.equal(3, r.calls) -- page 1, (false, err), nil
    assert.are.equal(2, #received("/pages/cursor", mark))
  end)
end)
