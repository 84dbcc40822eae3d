/*
 * http_spec.c - wire specs: a request read once into C, ready to hand to
 * curl.
 *
 *   core.wire(t) -> spec | nil, "header", message
 *
 * t: { url = s, method = s, header_lines = { "Name: value", ... }, body = s,
 *      timeout = seconds, connect_timeout = seconds, ca_file = path,
 *      client_tls = a client certificate (core.tls_client, tls_client.c),
 *      max_body = bytes, decompress = false (keep the body as sent, and no
 *      Accept-Encoding), output = path | on_data = function (where a 2xx
 *      body goes: http_sink.c), multipart = { { name =, value = | file =,
 *      filename =, type = }, ... } (checked by the Lua side), shown_url = s
 *      (res.url when it differs from url: secrets masked) }  (read raw: a
 *      request object's metamethods are for users)
 *
 * A spec never changes once made: the Lua side makes a new one whenever a
 * request's URL or header lines change (a token refresh), so the engine
 * reads no Lua table on the request path. The strings it points into and
 * the curl header list are kept alive by its user values.
 *
 * Header lists are cached per lines table (weak keys): an account sends the
 * same lines table with every request until its token changes, so the list
 * is built once. A request that decodes compressed replies gets the list
 * with an Accept-Encoding line at its end (a second cache): libcurl then
 * leaves out its own, which it would format anew for every request (about
 * 3,000 instructions more than a line of the list). URLs are parsed once per URL string (curl_url, weak
 * values) and handed to libcurl parsed (CURLOPT_CURLU), which spares it
 * parsing and re-assembling the string on every transfer. Each list and
 * parsed URL has a serial number that tells an easy handle it already has
 * it set.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "http.h"

#define SLIST_MT "connkit.http.slist"
#define SLIST_CACHE_KEY "connkit.http.slist_cache"
#define SLIST_AE_CACHE_KEY "connkit.http.slist_ae_cache" /* with Accept-Encoding */
#define NO_LINES_KEY "connkit.http.no_lines" /* stands for no header_lines */
#define CURLU_MT "connkit.http.curlu"
#define CURLU_CACHE_KEY "connkit.http.curlu_cache"
#define MAX_BODY_DEFAULT (256u * 1024u * 1024u)

enum { UV_URL = 1, UV_METHOD, UV_BODY, UV_CA, UV_HEADERS, UV_CURLU, UV_OUTPUT, UV_PART,
       UV_PARTS, UV_PARTS_SRC, UV_SHOWN, UV_CLIENT, UV_COUNT = UV_CLIENT };

typedef struct {
  struct curl_slist *list;
  uint64_t serial;
} slist_box;

/* Unique across every lua_State of the process: 0 means "no list". */
static uint64_t next_serial(void) {
  static uint64_t counter;
  return __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
}

/* Pushes registry[cache][value at index k] and returns it when it is a
 * box; otherwise pushes nothing and returns NULL. */
static void *cache_get(lua_State *L, const char *cache, int k) {
  void *box;
  lua_getfield(L, LUA_REGISTRYINDEX, cache);
  lua_pushvalue(L, k);
  lua_rawget(L, -2);
  box = lua_touserdata(L, -1);
  if (box != NULL) lua_remove(L, -2);
  else lua_pop(L, 2);
  return box;
}

/* registry[cache][value at index k] = the value on top (left there). */
static void cache_put(lua_State *L, const char *cache, int k) {
  lua_getfield(L, LUA_REGISTRYINDEX, cache);
  lua_pushvalue(L, k);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* A URL parsed once (curl_url), shared by the specs with that URL. */
typedef struct {
  CURLU *u;
  uint64_t serial;
} curlu_box;

static int curlu_gc(lua_State *L) {
  curlu_box *b = (curlu_box *)luaL_checkudata(L, 1, CURLU_MT);
  curl_url_cleanup(b->u);
  b->u = NULL;
  return 0;
}

/* Pushes the parsed-URL box for the URL string at index url (from the cache,
 * or parsed now) and returns it; NULL, with nothing pushed, for a URL
 * libcurl's parser refuses: that one goes as a string and fails (or not)
 * in the transfer, as before. */
static curlu_box *push_curlu(lua_State *L, int url) {
  curlu_box *box = (curlu_box *)cache_get(L, CURLU_CACHE_KEY, url);
  CURLU *u;
  if (box != NULL) return box;
  u = curl_url();
  if (u == NULL) return NULL;
  /* the flags libcurl itself parses a CURLOPT_URL with, but for guessing a
   * scheme: the Lua side only sends absolute URLs */
  if (curl_url_set(u, CURLUPART_URL, lua_tostring(L, url), CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
    curl_url_cleanup(u);
    return NULL;
  }
  box = (curlu_box *)lua_newuserdatauv(L, sizeof *box, 0);
  box->u = u;
  box->serial = next_serial();
  luaL_setmetatable(L, CURLU_MT);
  cache_put(L, CURLU_CACHE_KEY, url);
  return box;
}

static int slist_gc(lua_State *L) {
  slist_box *b = (slist_box *)luaL_checkudata(L, 1, SLIST_MT);
  curl_slist_free_all(b->list);
  b->list = NULL;
  return 0;
}

static int header_line_ok(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 0;
  return 1;
}

/* Whether a header line sets Accept-Encoding ("Name: value" or "Name;"). */
static int is_accept_encoding(const char *line, size_t len) {
  static const char name[] = "accept-encoding";
  size_t i, n = sizeof name - 1;
  if (len <= n || (line[n] != ':' && line[n] != ';')) return 0;
  for (i = 0; i < n; i++) {
    char c = line[i];
    if ((c >= 'A' && c <= 'Z' ? (char)(c + 32) : c) != name[i]) return 0;
  }
  return 1;
}

/* The Accept-Encoding line libcurl would send for CURLOPT_ACCEPT_ENCODING
 * "" (every encoding it decodes, in its order), into buf; "" when it
 * decodes none. */
static void accept_encoding_line(char *buf, size_t size) {
  int f = curl_version_info(CURLVERSION_NOW)->features;
  buf[0] = '\0';
  if (!(f & CURL_VERSION_LIBZ)) return;
  snprintf(buf, size, "Accept-Encoding: deflate, gzip%s%s",
           (f & CURL_VERSION_BROTLI) ? ", br" : "",
           (f & CURL_VERSION_ZSTD) ? ", zstd" : "");
}

/* Pushes the header list box for the lines table at index lines (from the
 * cache, or built now); with ae, the list ends with an Accept-Encoding line
 * unless the lines set one. Returns NULL, or a message with nothing
 * pushed. */
static const char *push_headers(lua_State *L, int lines, int ae) {
  const char *cache = ae ? SLIST_AE_CACHE_KEY : SLIST_CACHE_KEY;
  int i, n;
  slist_box *box;
  if (cache_get(L, cache, lines) != NULL) return NULL;
  box = (slist_box *)lua_newuserdatauv(L, sizeof *box, 0);
  box->list = NULL;
  box->serial = next_serial();
  luaL_setmetatable(L, SLIST_MT);
  n = (int)lua_rawlen(L, lines);
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *line;
    struct curl_slist *nl;
    lua_rawgeti(L, lines, i);
    line = lua_tolstring(L, -1, &len);
    if (line == NULL || !header_line_ok(line, len)) {
      lua_pop(L, 2); /* the line, the box */
      return "header";
    }
    if (ae && is_accept_encoding(line, len)) ae = 0; /* the caller's own */
    nl = curl_slist_append(box->list, line);
    lua_pop(L, 1);
    if (nl == NULL) {
      lua_pop(L, 1);
      return "out of memory";
    }
    box->list = nl;
  }
  if (ae) {
    char line[128];
    accept_encoding_line(line, sizeof line);
    if (line[0] != '\0') {
      struct curl_slist *nl = curl_slist_append(box->list, line);
      if (nl == NULL) {
        lua_pop(L, 1);
        return "out of memory";
      }
      box->list = nl;
    }
  }
  cache_put(L, cache, lines);
  return NULL;
}

/* Reads string field k of the table at t into user value uv of the spec at
 * s; returns the string (NULL when absent). */
static const char *keep_string(lua_State *L, int t, int s, const char *k,
                               int uv, size_t *len) {
  const char *v = NULL;
  lua_pushstring(L, k);
  lua_rawget(L, t);
  if (lua_type(L, -1) == LUA_TSTRING) {
    v = lua_tolstring(L, -1, len);
    lua_setiuservalue(L, s, uv);
  } else {
    lua_pop(L, 1);
  }
  return v;
}

/* A timeout field in milliseconds (0: none). Under a millisecond is
 * rounded up, never down to "none" (a deadline's last microseconds); NaN is
 * a spec the Lua side should never build. */
static long field_ms(lua_State *L, int t, const char *k) {
  long ms = 0;
  lua_pushstring(L, k);
  lua_rawget(L, t);
  if (lua_type(L, -1) == LUA_TNUMBER) {
    lua_Number v = lua_tonumber(L, -1);
    if (v != v) luaL_error(L, "connkit: bad request spec: %s is NaN", k);
    ms = ck_seconds_to_ms((double)v);
  }
  lua_pop(L, 1);
  return ms;
}

/* spec __gc: lets go of on_data. */
static int spec_gc(lua_State *L) {
  http_spec *s = (http_spec *)lua_touserdata(L, 1);
  if (s != NULL && s->data_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, s->data_ref);
    s->data_ref = LUA_NOREF;
  }
  return 0;
}

/* A string field of a multipart part (the table on top), or NULL. */
static const char *part_string(lua_State *L, const char *k, size_t *len) {
  const char *v;
  lua_pushstring(L, k);
  lua_rawget(L, -2);
  v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, len) : NULL;
  lua_pop(L, 1); /* the string stays alive in the part table */
  return v;
}

/* Reads the sink and multipart fields of the table at t into the spec s at
 * si (user values keep what its pointers point into). */
static void read_sink(lua_State *L, int t, int si, http_spec *s) {
  s->data_ref = LUA_NOREF;
  s->want = SINK_NONE;
  s->output = keep_string(L, t, si, "output", UV_OUTPUT, NULL);
  if (s->output != NULL) {
    lua_pushstring(L, s->output);
    lua_pushliteral(L, ".part");
    lua_concat(L, 2);
    s->output_part = lua_tostring(L, -1);
    lua_setiuservalue(L, si, UV_PART);
    s->want = SINK_FILE;
  }
  lua_pushliteral(L, "on_data");
  lua_rawget(L, t);
  if (lua_type(L, -1) == LUA_TFUNCTION && s->want == SINK_NONE) {
    s->data_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->want = SINK_FUNC;
  } else {
    lua_pop(L, 1);
  }
  s->shown_url = keep_string(L, t, si, "shown_url", UV_SHOWN, &s->shown_url_len);
  lua_pushliteral(L, "multipart");
  lua_rawget(L, t);
  if (lua_istable(L, -1) && lua_rawlen(L, -1) > 0) {
    int i, n = (int)lua_rawlen(L, -1);
    http_part *parts = (http_part *)lua_newuserdatauv(L, sizeof(http_part) * (size_t)n, 0);
    memset(parts, 0, sizeof(http_part) * (size_t)n);
    lua_setiuservalue(L, si, UV_PARTS);
    for (i = 0; i < n; i++) {
      http_part *p = &parts[i];
      lua_rawgeti(L, -1, i + 1);
      if (!lua_istable(L, -1)) luaL_error(L, "connkit: bad request spec: multipart[%d]", i + 1);
      p->name = part_string(L, "name", NULL);
      p->value = part_string(L, "value", &p->value_len);
      p->file = part_string(L, "file", NULL);
      p->filename = part_string(L, "filename", NULL);
      p->type = part_string(L, "type", NULL);
      if (p->name == NULL || (p->value == NULL) == (p->file == NULL))
        luaL_error(L, "connkit: bad request spec: multipart[%d]", i + 1);
      lua_pop(L, 1);
    }
    s->parts = parts;
    s->nparts = n;
    lua_setiuservalue(L, si, UV_PARTS_SRC); /* the strings' owner */
  } else {
    lua_pop(L, 1);
  }
}

/* Pushes a spec made from the table at index t. Returns NULL, or what is
 * wrong ("header" for a header line with CR, LF or NUL) with nothing
 * pushed. Raises for a table the Lua side should never build. */
const char *http_push_spec(lua_State *L, int t) {
  http_spec *s;
  int si;
  const char *bad;
  t = lua_absindex(L, t);
  s = (http_spec *)lua_newuserdatauv(L, sizeof *s, UV_COUNT);
  memset(s, 0, sizeof *s);
  s->data_ref = LUA_NOREF;
  luaL_setmetatable(L, SPEC_MT);
  si = lua_gettop(L);
  s->url = keep_string(L, t, si, "url", UV_URL, &s->url_len);
  if (s->url == NULL) luaL_error(L, "connkit: bad request spec: url is missing");
  if (strlen(s->url) == s->url_len) { /* (a NUL inside is libcurl's to refuse) */
    curlu_box *box;
    lua_getiuservalue(L, si, UV_URL);
    box = push_curlu(L, lua_gettop(L));
    if (box != NULL) {
      s->curlu = box->u;
      s->url_serial = box->serial;
      lua_setiuservalue(L, si, UV_CURLU);
    }
    lua_pop(L, 1);
  }
  s->method = keep_string(L, t, si, "method", UV_METHOD, NULL);
  s->body = keep_string(L, t, si, "body", UV_BODY, &s->body_len);
  s->ca_file = keep_string(L, t, si, "ca_file", UV_CA, NULL);
  if (s->method == NULL) s->method = "GET";
  lua_pushliteral(L, "client_tls");
  lua_rawget(L, t);
  s->client = tls_client_test(L, -1);
  if (s->client != NULL) lua_setiuservalue(L, si, UV_CLIENT);
  else lua_pop(L, 1);
  read_sink(L, t, si, s);
  s->timeout_ms = field_ms(L, t, "timeout");
  s->connect_timeout_ms = field_ms(L, t, "connect_timeout");
  lua_pushliteral(L, "max_body");
  lua_rawget(L, t);
  s->max_body = MAX_BODY_DEFAULT;
  if (lua_type(L, -1) == LUA_TNUMBER) {
    lua_Number v = lua_tonumber(L, -1);
    if (v >= 1 && v < 9007199254740992.0) s->max_body = (size_t)v; /* < 2^53 */
  }
  lua_pop(L, 1);
  lua_pushliteral(L, "decompress");
  lua_rawget(L, t);
  s->decompress = !lua_isboolean(L, -1) || lua_toboolean(L, -1); /* only false */
  lua_pop(L, 1);
  if (strcmp(s->method, "GET") == 0 && s->body == NULL && s->nparts == 0) s->kind = SPEC_GET;
  else if (strcmp(s->method, "HEAD") == 0) s->kind = SPEC_HEAD;
  else if (strcmp(s->method, "POST") == 0) s->kind = SPEC_POST;
  else s->kind = SPEC_OTHER;
  lua_pushliteral(L, "header_lines");
  lua_rawget(L, t);
  if (s->decompress && !lua_istable(L, -1)) { /* the Accept-Encoding line alone */
    lua_pop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, NO_LINES_KEY);
  }
  if (lua_istable(L, -1)) {
    bad = push_headers(L, lua_gettop(L), s->decompress);
    if (bad != NULL) {
      lua_pop(L, 2);
      return bad;
    }
    s->headers = ((slist_box *)lua_touserdata(L, -1))->list;
    s->headers_serial = ((slist_box *)lua_touserdata(L, -1))->serial;
    lua_setiuservalue(L, si, UV_HEADERS);
  }
  lua_pop(L, 1);
  return NULL;
}

/* The spec at index i: as is, or made from a table (pushed, so it stays
 * alive on the stack). Returns NULL and sets *bad when it cannot be made. */
http_spec *http_to_spec(lua_State *L, int i, const char **bad) {
  http_spec *s = (http_spec *)luaL_testudata(L, i, SPEC_MT);
  *bad = NULL;
  if (s != NULL) return s;
  luaL_checktype(L, i, LUA_TTABLE);
  *bad = http_push_spec(L, i);
  return *bad ? NULL : (http_spec *)lua_touserdata(L, -1);
}

/* core.wire(t) -> spec | nil, "header", message */
static int wire(lua_State *L) {
  const char *bad;
  luaL_checktype(L, 1, LUA_TTABLE);
  bad = http_push_spec(L, 1);
  if (bad != NULL) return http_fail_attach(L, bad);
  return 1;
}

/* registry[key] = a new table with weak keys or values (mode "k" or "v") */
static void new_cache(lua_State *L, const char *key, const char *mode) {
  lua_newtable(L);
  lua_newtable(L);
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, key);
}

void http_spec_open(lua_State *L) {
  static const luaL_Reg slist_meta[] = {{"__gc", slist_gc}, {NULL, NULL}};
  static const luaL_Reg curlu_meta[] = {{"__gc", curlu_gc}, {NULL, NULL}};
  static const luaL_Reg spec_meta[] = {{"__gc", spec_gc}, {NULL, NULL}};
  compat_newclass(L, SLIST_MT, NULL, slist_meta);
  compat_newclass(L, CURLU_MT, NULL, curlu_meta);
  compat_newclass(L, SPEC_MT, NULL, spec_meta);
  new_cache(L, SLIST_CACHE_KEY, "k"); /* keyed by the lines tables */
  new_cache(L, SLIST_AE_CACHE_KEY, "k");
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, NO_LINES_KEY);
  new_cache(L, CURLU_CACHE_KEY, "v"); /* a URL no spec uses is dropped */
  lua_pushcfunction(L, wire);
  lua_setfield(L, -2, "wire");
}
