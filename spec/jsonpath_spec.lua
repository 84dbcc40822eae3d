-- connkit.jsonpath (paths into decoded replies) and connkit.http.links (Link
-- headers, RFC 3986 references): the pieces pagination reads replies with.
local jsonpath = require "connkit.jsonpath"
local links = require "connkit.http.links"
local cjson = require "cjson"

describe("connkit.jsonpath", function()
  local doc = cjson.decode([[{"meta":{"next_cursor":"abc","n":3,"gone":null},
    "links":[{"href":"/a"},{"href":"/b"}],"data":[1,2,3],"we.ird":{"k-1":true}}]])

  it("reads dotted names and zero-based indexes", function()
    assert.are.equal("abc", jsonpath.get(doc, "meta.next_cursor"))
    assert.are.equal("/b", jsonpath.get(doc, "links[1].href"))
    assert.are.equal(1, jsonpath.get(doc, "data[0]"))
    assert.are.equal(3, jsonpath.get(doc.data, "[2]"))
    assert.are.equal(true, jsonpath.get({ a = { ["k-1"] = true } }, "a.k-1"))
    assert.are.equal(cjson.null, jsonpath.get(doc, "meta.gone"))
  end)

  it("gives nil for a missing step or a step into a scalar", function()
    assert.is_nil(jsonpath.get(doc, "meta.missing"))
    assert.is_nil(jsonpath.get(doc, "meta.n.deeper"))
    assert.is_nil(jsonpath.get(doc, "data[7]"))
    assert.is_nil(jsonpath.get(doc, "meta.gone.x"))
    assert.is_nil(jsonpath.get("not a table", "a"))
  end)

  it("compiles once; bad syntax raises saying what is wrong", function()
    local p = jsonpath.compile("links[0].href")
    assert.are.equal("links[0].href", tostring(p))
    assert.are.equal(p, jsonpath.compile(p))
    assert.are.equal("/a", jsonpath.get(doc, p))
    for path, why in pairs({ ["a..b"] = "has an empty name at character 2", [".a"] = "has an empty name",
        ["a."] = "has an empty name", ["a["] = "has a bad index", ["a[x]"] = "has a bad index",
        ["a[-1]"] = "has a bad index", ["a]"] = "has a stray ']'", ["a[0]b"] = "needs a '.'",
        [""] = "must not be empty" }) do
      local ok, err = pcall(jsonpath.compile, path)
      assert.is_false(ok, path)
      assert.matches(why, err, 1, true)
    end
    local ok, err = pcall(jsonpath.compile, 42)
    assert.is_false(ok)
    assert.matches("must be a string, not a number", err, 1, true)
  end)
end)

describe("connkit.http.links", function()
  it("finds rel=next among several links, quoted commas and other rels", function()
    local h = [[<https://x.test/?page=1>; rel="first"; title="a, <b>; rel=next", ]]
      .. [[</items?page=3>; title="x"; REL="Next last", <https://x.test/?page=9>; rel=last]]
    assert.are.equal("/items?page=3", links.find_rel(h, "next"))
    assert.are.equal("https://x.test/?page=1", links.find_rel(h, "first"))
    assert.is_nil(links.find_rel("<x>; rel=prev", "next"))
    assert.is_nil(links.find_rel(nil, "next"))
  end)

  it("resolves references as RFC 3986 section 5.4 does", function()
    local base = "http://a/b/c/d;p?q"
    local cases = {
      ["g:h"] = "g:h", g = "http://a/b/c/g", ["./g"] = "http://a/b/c/g", ["g/"] = "http://a/b/c/g/",
      ["/g"] = "http://a/g", ["//g"] = "http://g", ["?y"] = "http://a/b/c/d;p?y", ["g?y"] = "http://a/b/c/g?y",
      ["#s"] = "http://a/b/c/d;p?q#s", [""] = "http://a/b/c/d;p?q", ["."] = "http://a/b/c/",
      [".."] = "http://a/b/", ["../g"] = "http://a/b/g", ["../.."] = "http://a/", ["../../g"] = "http://a/g",
      ["../../../g"] = "http://a/g", ["/./g"] = "http://a/g", ["g."] = "http://a/b/c/g.",
      ["g/../h"] = "http://a/b/c/h", ["./../g"] = "http://a/b/g", [";x"] = "http://a/b/c/;x",
    }
    for ref, want in pairs(cases) do assert.are.equal(want, links.resolve(base, ref), ref) end
  end)
end)
