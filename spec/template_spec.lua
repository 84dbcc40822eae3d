-- Templates compiled in C (csrc/template.c): parsing, literal braces, names,
-- the context of each placeholder in a URL, per-place percent-encoding, the
-- values a place refuses, and the order values are looked up in.
local core = require "connkit.core"

-- Compiles src of kind and fails the test when it does not parse.
local function T(src, kind)
  local t, err = core.template(src, kind or "raw")
  assert(t, ("template %q did not parse: %s"):format(src, tostring(err)))
  return t
end

-- Renders src of kind with one value table.
local function R(src, kind, values)
  return T(src, kind):render(values)
end

-- The parse error of src (and asserts there is one).
local function parse_error(src, kind)
  local t, err = core.template(src, kind or "raw")
  assert.is_nil(t, ("template %q parsed but should not"):format(src))
  assert.is_string(err)
  return err
end

local AWKWARD = "a b/c?d&e=f#g%"

describe("template parsing", function()
  it("refuses a lone '{' and names its position", function()
    local err = parse_error("ab{c")
    assert.matches("unmatched '{'", err, 1, true)
    assert.matches("position 3", err, 1, true)
    assert.matches("unmatched '{' at position 1", parse_error("{"), 1, true)
  end)

  it("refuses a lone '}' and names its position", function()
    assert.matches("unmatched '}' at position 2", parse_error("x}y"), 1, true)
    assert.matches("unmatched '}' at position 1", parse_error("}"), 1, true)
    -- a '}' left over after a placeholder
    assert.matches("unmatched '}' at position 4", parse_error("{a}}"), 1, true)
  end)

  it("refuses an empty placeholder {}", function()
    assert.matches("empty placeholder '{}' at position 3", parse_error("ab{}cd"), 1, true)
  end)

  it("refuses bad placeholder names", function()
    for _, src in ipairs({ "{1a}", "{a-b}", "{a b}", "{a.b}", "{é}", "{ a}" }) do
      assert.matches("bad placeholder name at position 1", parse_error(src), 1, true)
    end
    assert.matches("bad placeholder name at position 5", parse_error("x/y/{9}"), 1, true)
    -- nested braces
    assert.matches("unmatched '{' at position 1", parse_error("{a{b}}"), 1, true)
  end)

  it("refuses a name longer than 64 characters but takes 64", function()
    assert.matches("bad placeholder name", parse_error("{" .. ("a"):rep(65) .. "}"), 1, true)
    local t = T("{" .. ("a"):rep(64) .. "}")
    assert.equal("v", t:render({ [("a"):rep(64)] = "v" }))
  end)

  it("accepts names with letters, digits and _", function()
    assert.same({ "_a", "b9", "serverName", "x_y_1" }, T("{_a}{b9}{serverName}{x_y_1}"):names())
  end)

  it("reports the error position in url templates too", function()
    assert.matches("position 9", parse_error("https://{", "url"), 1, true)
  end)

  it("refuses an unknown template kind as a programming error", function()
    local ok, err = pcall(core.template, "x", "bogus")
    assert.is_false(ok)
    assert.matches("unknown template kind", tostring(err), 1, true)
  end)

  it("refuses a template longer than 65535 bytes", function()
    local ok, err = pcall(core.template, ("x"):rep(65536), "raw")
    assert.is_false(ok)
    assert.matches("65535", tostring(err), 1, true)
    assert.truthy(core.template(("x"):rep(65535), "raw"))
  end)

  it("tostring counts the placeholders", function()
    assert.equal("connkit.template (2 placeholders)", tostring(T("{a}/{b}")))
  end)
end)

describe("template literal braces", function()
  it("renders {{ and }} as single braces", function()
    assert.equal("{a}", R("{{a}}", "raw", {}))
    assert.equal("a}b{c", R("a}}b{{c", "raw", {}))
    assert.equal("{}", R("{{}}", "raw", {}))
  end)

  it("treats a {{...}} pair as no placeholder", function()
    assert.same({}, T("{{a}}"):names())
    assert.equal("connkit.template (0 placeholders)", tostring(T("{{a}}")))
  end)

  it("mixes literal braces with placeholders", function()
    assert.equal("a{b1c}d", R("a{{b{x}c}}d", "raw", { x = 1 }))
    assert.equal("{v}", R("{{{x}}}", "raw", { x = "v" }))
    assert.same({ "x" }, T("{{{x}}}"):names())
  end)

  it("keeps literal braces in url templates without changing the contexts", function()
    local t = T("https://h.test/{{x}}/{p}", "url")
    assert.same({ p = "path" }, t:contexts())
    assert.equal("https://h.test/{x}/a%20b", t:render({ p = "a b" }))
    -- a leading "{{" is a literal, not a URL prefix placeholder
    local t2 = T("{{x}}/{p}", "url")
    assert.same({ p = "path" }, t2:contexts())
    assert.equal("{x}/%2F", t2:render({ p = "/" }))
  end)

  it("renders a text without placeholders as it is", function()
    assert.equal("plain text / ? &", R("plain text / ? &", "url", {}))
    assert.equal("", R("", "raw", {}))
  end)
end)

describe("template names()", function()
  it("lists each name once, in order of first appearance", function()
    assert.same({ "b", "a", "c" }, T("{b}/{a}/{b}?x={c}&y={a}"):names())
  end)

  it("is empty without placeholders", function()
    assert.same({}, T("nothing here"):names())
  end)

  it("returns a fresh table every call", function()
    local t = T("{a}")
    local n1 = t:names()
    n1[1] = "changed"
    assert.same({ "a" }, t:names())
  end)
end)

describe("template contexts in url templates", function()
  it("a leading placeholder is a URL prefix", function()
    local c = T("{base}/x/{id}", "url"):contexts()
    assert.same({ base = "prefix", id = "path" }, c)
  end)

  it("a placeholder in the authority is a host", function()
    assert.same({ h = "host", p = "path" }, T("https://{h}.x.test/{p}", "url"):contexts())
    assert.same({ h = "host", port = "host" }, T("http://{h}:{port}/", "url"):contexts())
  end)

  it("after the authority: path, then query, fragment counts as query", function()
    local c = T("https://x.test/a/{p}?q={q}&r=1#{f}", "url"):contexts()
    assert.same({ p = "path", q = "query", f = "query" }, c)
  end)

  it("a fragment straight after the path is query-escaped", function()
    local t = T("https://x.test/a#{f}", "url")
    assert.same({ f = "query" }, t:contexts())
    assert.equal("https://x.test/a#x%23y", t:render({ f = "x#y" }))
  end)

  it("relative URLs start in the path", function()
    assert.same({ b = "path" }, T("/a/{b}", "url"):contexts())
    assert.same({ b = "path" }, T("a/{b}", "url"):contexts())
    assert.same({ b = "path", c = "query" }, T("/a/{b}?c={c}", "url"):contexts())
  end)

  it("a prefix placeholder followed by a query", function()
    assert.same({ base = "prefix", q = "query" }, T("{base}?q={q}", "url"):contexts())
  end)

  it("a placeholder scheme, then the authority", function()
    assert.same({ scheme = "prefix", h = "host", p = "path" }, T("{scheme}://{h}/{p}", "url"):contexts())
  end)

  it("other kinds put every placeholder in that kind", function()
    for _, kind in ipairs({ "raw", "header", "form", "query", "path" }) do
      assert.same({ a = kind, b = kind }, T("{a}/{b}?{a}", kind):contexts())
    end
  end)

  it("regression: a relative URL with '://' in its query gives the next placeholder host context", function()
    -- template.c url_start(): a "://" before the first placeholder makes the
    -- template start in U_SCHEME, even when a '/' or '?' came before it; the
    -- query placeholder below is then treated as a host name.
    local t = T("/login?next=https://{h}/x", "url")
    assert.same({ h = "query" }, t:contexts())
    assert.equal("/login?next=https://a%20b/x", t:render({ h = "a b" }))
  end)
end)

describe("template percent-encoding", function()
  it("path segments encode / ? & = # % and space", function()
    assert.equal("https://x.test/a%20b%2Fc%3Fd%26e%3Df%23g%25",
      R("https://x.test/{p}", "url", { p = AWKWARD }))
    assert.equal("a%20b%2Fc%3Fd%26e%3Df%23g%25", R("{p}", "path", { p = AWKWARD }))
    assert.equal("a%20b%2Fc%3Fd%26e%3Df%23g%25", core.escape(AWKWARD, "path"))
  end)

  it("query values encode & = # + and space as %20", function()
    assert.equal("https://x.test/p?v=a%20b%2Fc%3Fd%26e%3Df%23g%25",
      R("https://x.test/p?v={v}", "url", { v = AWKWARD }))
    assert.equal("1%2B1%3D2", R("{v}", "query", { v = "1+1=2" }))
    assert.equal("1%2B1%3D2%20x", core.escape("1+1=2 x", "query"))
  end)

  it("form values use + for a space and encode +", function()
    assert.equal("a+b%2Fc%3Fd%26e%3Df%23g%25", R("{v}", "form", { v = AWKWARD }))
    assert.equal("a+b%2Bc", core.escape("a b+c", "form"))
  end)

  it("leaves unreserved characters alone", function()
    local u = "AZaz09-._~"
    for _, ctx in ipairs({ "path", "query", "form" }) do
      assert.equal(u, core.escape(u, ctx))
      assert.equal(u, R("{v}", ctx, { v = u }))
    end
  end)

  it("encodes UTF-8 byte by byte in upper-case hex", function()
    assert.equal("%C3%A9", R("{v}", "path", { v = "é" }))
    assert.equal("%C3%BC%2F%C3%9F", R("{v}", "path", { v = "ü/ß" }))
    assert.equal("%C3%BC%2F%C3%9F", R("{v}", "query", { v = "ü/ß" }))
    assert.equal("%C3%BC%2F%C3%9F", core.escape("ü/ß", "form"))
    assert.equal("https://x.test/%C3%A9?q=%C3%BC%2F%C3%9F",
      R("https://x.test/{p}?q={q}", "url", { p = "é", q = "ü/ß" }))
  end)

  it("encodes control characters and NUL in URL places", function()
    assert.equal("a%0D%0Ab%00c", R("{v}", "query", { v = "a\r\nb\0c" }))
    assert.equal("a%0D%0Ab%00c", core.escape("a\r\nb\0c", "path"))
  end)

  it("never double-encodes: %20 in a value becomes %2520 exactly once", function()
    for _, ctx in ipairs({ "path", "query", "form" }) do
      local out = R("{v}", ctx, { v = "x%20y" })
      assert.equal("x%2520y", out)
      assert.is_nil(out:find("%252520", 1, true))
    end
    local t = T("https://x.test/{p}?q={q}", "url")
    local vals = { p = "a%2Fb", q = "%20" }
    assert.equal("https://x.test/a%252Fb?q=%2520", t:render(vals))
    -- rendering again gives the same result: nothing is encoded twice
    assert.equal("https://x.test/a%252Fb?q=%2520", t:render(vals))
    assert.equal("%20", vals.q)
  end)

  it("does not encode literal text of the template", function()
    assert.equal("https://x.test/a b?x=%41&y=v%20w",
      R("https://x.test/a b?x=%41&y={y}", "url", { y = "v w" }))
  end)

  it("inserts raw and header values as they are", function()
    assert.equal("a b/c?d&e=f#g%", R("{v}", "raw", { v = AWKWARD }))
    assert.equal("Bearer a b/c?d&e=f#g%", R("Bearer {v}", "header", { v = AWKWARD }))
    assert.equal("é", R("{v}", "header", { v = "é" }))
  end)

  it("core.escape defaults to query and refuses an unknown context", function()
    assert.equal("a%20b%2B", core.escape("a b+"))
    assert.is_false((pcall(core.escape, "x", "header")))
    assert.is_false((pcall(core.escape, {}, "path")))
  end)
end)

describe("template values", function()
  it("takes an integer and renders it without a fraction", function()
    assert.equal("/items/42", R("/items/{id}", "url", { id = 42 }))
    assert.equal("x-7", R("x{n}", "raw", { n = -7 }))
    assert.equal("0", R("{n}", "header", { n = 0 }))
  end)

  it("takes a fractional number", function()
    assert.equal("v=1.5", R("v={n}", "query", { n = 1.5 }))
  end)

  it("regression: an integral float (as lua-cjson decodes every JSON number on 5.3+) renders as 42.0", function()
    -- template.c template_render(): values go through lua_tolstring, which on
    -- Lua 5.3/5.4 writes 42.0 for a float; JSON-decoded numbers (vars,
    -- parameter defaults from connkit.load) are floats there.
    assert.equal("/items/42", R("/items/{id}", "url", { id = 42.0 }))
    assert.equal("/items/1234567890123456", R("/items/{id}", "url", { id = 1234567890123456.0 }))
  end)

  it("refuses booleans and tables as invalid, naming the placeholder and place", function()
    for _, v in ipairs({ true, false, {}, print }) do
      local s, why, name, where = T("/a/{id}", "url"):render({ id = v })
      assert.is_nil(s)
      assert.equal("invalid", why)
      assert.equal("id", name)
      assert.equal("path", where)
    end
    local s, why, name, where = T("{flag}", "raw"):render({ flag = true })
    assert.same({ nil, "invalid", "flag", "raw" }, { s, why, name, where })
  end)

  it("an empty string is a value", function()
    assert.equal("/a//b", R("/a/{x}/b", "url", { x = "" }))
    assert.equal("k=", R("k={x}", "raw", { x = "" }))
  end)
end)

describe("template places that refuse values", function()
  it("header refuses CR, LF and NUL with reason invalid", function()
    local t = T("Bearer {token}", "header")
    for _, v in ipairs({ "a\r\nX-Injected: 1", "a\rb", "a\nb", "a\0b", "\n" }) do
      local s, why, name, where = t:render({ token = v })
      assert.is_nil(s)
      assert.equal("invalid", why)
      assert.equal("token", name)
      assert.equal("header", where)
    end
    assert.equal("Bearer a\tb", t:render({ token = "a\tb" }))
  end)

  it("core.header_safe tells CR, LF and NUL apart from other bytes", function()
    assert.is_true(core.header_safe("Bearer abc é \t"))
    assert.is_true(core.header_safe(""))
    assert.is_false(core.header_safe("a\rb"))
    assert.is_false(core.header_safe("a\nb"))
    assert.is_false(core.header_safe("a\0b"))
  end)

  it("host refuses /, @, space, % and an empty value", function()
    local t = T("https://{h}.x.test/", "url")
    for _, v in ipairs({ "a/b", "evil.test@a", "a b", "a%2F", "", "a?b", "a#b", "é" }) do
      local s, why, name, where = t:render({ h = v })
      assert.is_nil(s, ("host value %q was accepted"):format(v))
      assert.equal("invalid", why)
      assert.equal("h", name)
      assert.equal("host", where)
    end
  end)

  it("host takes names, digits, dots, dashes, a port and IPv6 brackets", function()
    assert.equal("https://eu-1.x.test/", R("https://{h}.x.test/", "url", { h = "eu-1" }))
    assert.equal("http://127.0.0.1:8080/", R("http://{h}:{p}/", "url", { h = "127.0.0.1", p = 8080 }))
    assert.equal("http://[::1]/", R("http://{h}/", "url", { h = "[::1]" }))
  end)

  it("prefix inserts a URL as it is but refuses spaces and control or non-ASCII bytes", function()
    local t = T("{base}/x/{id}", "url")
    assert.equal("https://h.test/api?k=1/x/7", t:render({ base = "https://h.test/api?k=1", id = 7 }))
    for _, v in ipairs({ "https://h.test/a b", "https://h.test/\r\n", "https://h.test/é", "x\0" }) do
      local s, why, name, where = t:render({ base = v, id = 1 })
      assert.is_nil(s)
      assert.equal("invalid", why)
      assert.equal("base", name)
      assert.equal("prefix", where)
    end
  end)

  it("reports the first unusable value in template order", function()
    local s, why, name = T("https://{h}/{p}", "url"):render({ h = "a/b", p = true })
    assert.is_nil(s)
    assert.equal("invalid", why)
    assert.equal("h", name)
  end)
end)

describe("template path segments of dots", function()
  -- what each refused value would have done: "/files/.." is "/" once a
  -- client or server resolves it, and nginx decodes %2F before resolving
  local function refused(src, values, name)
    local s, why, got, where = T(src, "url"):render(values)
    assert.is_nil(s, ("%s with %s was rendered as %s"):format(src, tostring(values.a), tostring(s)))
    assert.equal("dots", why)
    assert.equal(name or "a", got)
    assert.equal("path", where)
  end

  it("refuses '.' and '..' filling a whole path segment", function()
    for _, v in ipairs({ ".", ".." }) do
      refused("/files/{a}", { a = v })
      refused("/files/{a}/meta", { a = v })
      refused("/files/{a}?x=1", { a = v })
      refused("/files/{a}#top", { a = v })
      refused("https://api.test/v1/{a}", { a = v })
      refused("{base}/{a}/x", { base = "https://api.test", a = v })
    end
  end)

  it("refuses a segment that several placeholders and literals make '.' or '..'", function()
    refused("/files/{a}{b}", { a = ".", b = "." }, "b")
    refused("/files/{a}{b}", { a = "..", b = "" }, "b")
    refused("/files/.{a}", { a = "." })
    refused("/files/{a}./x", { a = "." })
  end)

  it("refuses dot pieces of a value cut at / or \\ (escaped, but servers decode %2F)", function()
    for _, v in ipairs({ "../admin", "x/..", "a/./b", "..\\admin", "x\\.", "/..", "../" }) do
      refused("/files/{a}", { a = v })
    end
  end)

  it("takes dots that make no dot segment, and encoded dots", function()
    local t = T("/files/{a}", "url")
    for v, out in pairs({ ["..."] = "/files/...", ["a.b"] = "/files/a.b", [".x"] = "/files/.x",
      ["x.."] = "/files/x..", [""] = "/files/", ["%2e%2e"] = "/files/%252e%252e",
      ["a/b"] = "/files/a%2Fb" }) do
      assert.equal(out, t:render({ a = v }))
    end
    assert.equal("/files/..json", T("/files/{a}.json", "url"):render({ a = "." }))
    assert.equal("/files/x.", T("/files/x{a}", "url"):render({ a = "." }))
    -- a query value or a host is not a path segment
    assert.equal("/files?q=..", T("/files?q={a}", "url"):render({ a = ".." }))
    assert.equal("/files/../x", T("/files/../{a}", "url"):render({ a = "x" })) -- literal text is the author's
    -- other kinds: a "path" template is one path, "raw" is not a URL
    assert.is_nil((T("/f/{a}", "path"):render({ a = ".." })))
    assert.equal("..", T("{a}", "raw"):render({ a = ".." }))
  end)
end)

describe("template lookup", function()
  local t = T("{a}-{b}-{c}", "raw")

  it("looks in t1, then t2, then t3", function()
    assert.equal("1-2-3", t:render({ a = 1 }, { a = "x", b = 2 }, { a = "y", b = "z", c = 3 }))
    assert.equal("x-z-3", t:render({}, { a = "x" }, { a = "y", b = "z", c = 3 }))
  end)

  it("skips a nil lookup table", function()
    assert.equal("1-2-3", t:render(nil, { a = 1, b = 2 }, { c = 3 }))
    assert.equal("1-2-3", t:render(nil, nil, { a = 1, b = 2, c = 3 }))
  end)

  it("does not look beyond the third table", function()
    local s, why, name = t:render({}, {}, {}, { a = 1, b = 2, c = 3 })
    assert.is_nil(s)
    assert.equal("missing", why)
    assert.equal("a", name)
  end)

  it("reports the first missing name", function()
    local s, why, name = t:render({ a = 1, c = 3 })
    assert.same({ nil, "missing", "b" }, { s, why, name })
    s, why, name = t:render()
    assert.same({ nil, "missing", "a" }, { s, why, name })
  end)

  it("a false value in t1 is invalid, not a fall-through", function()
    local s, why, name = t:render({ a = false }, { a = 1, b = 2, c = 3 })
    assert.is_nil(s)
    assert.equal("invalid", why)
    assert.equal("a", name)
  end)

  it("uses __index of a lookup table", function()
    local proxy = setmetatable({}, { __index = function(_, k) return k:upper() end })
    assert.equal("A-B-C", t:render(proxy))
  end)

  it("renders a repeated placeholder each time", function()
    assert.equal("v/v/v", R("{x}/{x}/{x}", "raw", { x = "v" }))
  end)

  it("renders many placeholders", function()
    local src, vals, want = {}, {}, {}
    for i = 1, 300 do
      src[i] = "{p" .. i .. "}"
      vals["p" .. i] = i
      want[i] = tostring(i)
    end
    local tt = T(table.concat(src, ","), "raw")
    assert.equal(table.concat(want, ","), tt:render(vals))
    assert.equal(300, #tt:names())
  end)

  it("refuses a non-template self", function()
    assert.is_false((pcall(t.render, {}, {})))
  end)
end)
