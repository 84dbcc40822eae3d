-- Numbers go out as the user wrote them: a whole number taken from a JSON
-- reply (a float on Lua 5.3+, since lua-cjson decodes every number as one)
-- is sent as "3", not "3.0", in the query, a form, a header, the URL, a JSON
-- body and the request parameters; big ids keep every digit. Asserted on
-- what httpbin received.
local helpers = require "helpers"
local connkit = require "connkit"
local core = require "connkit.core"
local cjson = require "cjson"

local BIG = 123456789012345 -- 15 digits: lua-cjson's "%.14g" would write 1.2345678901234e+14
local BIG_TEXT = "123456789012345" -- (tostring(BIG) is "%.14g" too on 5.1 and LuaJIT)

describe("numbers", function()
  local hb, acct

  -- values as they come out of a JSON reply: httpbin's echo of a JSON body
  local function decoded_from_reply()
    local res = assert(acct:post("/anything", { json = { id = 3, big = BIG, ratio = 0.1, neg = -7 } }))
    assert.equal(200, res.status)
    local v = assert(res:json()).json
    if math.type then -- the point of the test: these are floats on 5.3+
      assert.equal("float", math.type(v.id))
      assert.equal("float", math.type(v.big))
    end
    return v
  end

  setup(function()
    hb = helpers.peer("httpbin")
    local integ = connkit.integration {
      name = "Numbers", key = "numbers", auth = "api_token", base_url = "{base}",
      parameters = { base = { required = true }, shard = { default = 1 } },
      request_parameters = { headers = { ["X-Shard"] = "{shard}" } },
    }
    acct = integ:account { parameters = { base = hb.url }, credentials = { token = "tok-numbers" } }
  end)

  it("a whole number from a JSON reply goes into the query, a header and the URL without .0", function()
    local v = decoded_from_reply()
    local got = assert(acct:get("/anything/items/{id}", {
      vars = { id = v.id }, query = { id = v.id, big = v.big, ratio = v.ratio, list = { v.id, v.neg } },
      headers = { ["X-Id"] = v.id, ["X-Big"] = v.big },
    })):json()
    assert.equal("3", got.args.id)
    assert.equal(BIG_TEXT, got.args.big)
    assert.equal("0.1", got.args.ratio)
    assert.same({ "3", "-7" }, got.args.list)
    assert.equal("3", got.headers["X-Id"])
    assert.equal(BIG_TEXT, got.headers["X-Big"])
    assert.matches("/anything/items/3?", got.url, 1, true)
  end)

  it("a whole number from a JSON reply goes into a form body without .0", function()
    local v = decoded_from_reply()
    local got = assert(acct:post("/anything", { form = { id = v.id, big = v.big, neg = v.neg } })):json()
    assert.equal("3", got.form.id)
    assert.equal(BIG_TEXT, got.form.big)
    assert.equal("-7", got.form.neg)
  end)

  it("a JSON body keeps every digit of big numbers and writes whole ones as integers", function()
    local v = decoded_from_reply()
    local got = assert(acct:post("/anything", { json = { id = v.id, big = v.big, ratio = v.ratio,
      third = 1 / 3, list = { v.id, 2.5 }, nested = { deep = { v.big } } } })):json()
    local raw = got.data -- the body exactly as it arrived
    assert.matches('"id":3[,}]', raw)
    assert.matches('"big":' .. BIG_TEXT .. '[,}]', raw)
    assert.matches('"ratio":0%.1[,}]', raw)
    assert.matches('"third":0%.3333333333333333[,}]', raw)
    assert.matches('"list":%[3,2%.5%]', raw)
    assert.matches('"deep":%[' .. BIG_TEXT .. '%]', raw)
    assert.not_matches("e%+", raw)
  end)

  it("numbers straight from cjson.decode go out as written", function()
    local v = cjson.decode('{"page": 2, "id": 9007199254740991, "limit": 100.0}')
    local got = assert(acct:get("/anything", { query = v, headers = { ["X-Page"] = v.page } })):json()
    assert.equal("2", got.args.page)
    assert.equal("9007199254740991", got.args.id)
    assert.equal("100", got.args.limit)
    assert.equal("2", got.headers["X-Page"])
  end)

  it("request parameters, account parameters and credentials given as numbers are written as integers", function()
    local integ = connkit.integration {
      name = "Numbers", key = "numbers2", auth = "basic", base_url = "{base}",
      parameters = { base = { required = true }, shard = { required = true } },
      request_parameters = { headers = { ["X-Shard"] = "{shard}", ["X-Api"] = cjson.decode("[2]")[1] },
        query = { shard = "{shard}", api = cjson.decode("[2]")[1] } },
    }
    local a = integ:account { parameters = { base = hb.url, shard = cjson.decode("[4]")[1] },
      credentials = { username = "u", password = cjson.decode("[1234]")[1] } }
    local got = assert(a:get("/anything")):json()
    assert.equal("4", got.headers["X-Shard"])
    assert.equal("4", got.args.shard)
    assert.equal("2", got.headers["X-Api"])
    assert.equal("2", got.args.api)
    assert.equal("Basic " .. core.b64encode("u:1234"), got.headers.Authorization)
  end)

  it("connkit.load turns whole numbers of a JSON definition into integers", function()
    local dir = helpers.tmpdir("numbers")
    local path = dir .. "/def.json"
    helpers.write_file(path, cjson.encode {
      name = "Loaded", key = "loaded", auth = "api_token", base_url = "{base}",
      parameters = { base = { required = true }, version = { default = 2 } },
      request_parameters = { query = { v = "{version}", fixed = 7 }, headers = { ["X-Version"] = "{version}" } },
      retry = { max = 2 }, timeout = 30,
    })
    local integ = connkit.load(path)
    if math.type then
      assert.equal("integer", math.type(integ.timeout))
      assert.equal("integer", math.type(integ.retry.max))
      assert.equal("integer", math.type(integ.parameters.version.default))
    end
    local a = integ:account { parameters = { base = hb.url }, credentials = { token = "t" } }
    local got = assert(a:get("/anything")):json()
    assert.equal("2", got.args.v)
    assert.equal("7", got.args.fixed)
    assert.equal("2", got.headers["X-Version"])
    helpers.execute("rm -rf " .. helpers.shell_quote(dir))
  end)
end)

describe("connkit.json", function()
  local json = require "connkit.json"

  it("writes numbers as templates do and everything else as cjson does", function()
    assert.equal("3", json.encode(3.0))
    assert.equal(BIG_TEXT, json.encode(BIG + 0.0))
    assert.equal("0.1", json.encode(0.1))
    assert.equal('"a\\/b\\"c"', json.encode('a/b"c'))
    assert.equal("[1,null,3]", json.encode({ 1, cjson.null, 3 }))
    assert.equal("{}", json.encode({}))
    assert.equal('{"1.5":true}', json.encode({ [1.5] = true }))
    assert.equal('[1,null,3]', json.encode({ [1] = 1, [3] = 3 }))
    assert.equal('{"a":{"b":[1,2]}}', json.encode({ a = { b = { 1, 2 } } }))
  end)

  it("refuses what JSON cannot hold, saying why", function()
    for _, v in ipairs({ 0 / 0, math.huge, { f = print }, { [20] = 1 }, { [true] = 1 } }) do
      local s, err = json.encode(v)
      assert.is_nil(s)
      assert.is_string(err)
    end
    local cycle = {}
    cycle.self = cycle
    assert.matches("nested", select(2, json.encode(cycle)))
  end)

  it("core.format_number writes the fewest digits that read back exactly", function()
    assert.equal("3", core.format_number(3.0))
    assert.equal("-7", core.format_number(-7.0))
    assert.equal("0.1", core.format_number(0.1))
    assert.equal("2.5", core.format_number(2.5))
    assert.equal("0.3333333333333333", core.format_number(1 / 3))
    assert.equal(1 / 3, tonumber(core.format_number(1 / 3)))
    assert.equal("1e+300", core.format_number(1e300))
  end)
end)
