/*
 * http.c - the transfer engine: one curl multi handle per lua_State.
 *
 * The multi owns the connection pool, DNS cache and TLS sessions, so every
 * account shares them. Easy handles are kept in a free list and reused
 * (reset only after a transfer that set more than a plain GET's options). A
 * blocking request is one transfer on the engine, waited on with
 * curl_multi_poll; connkit.all and req:start() are the same engine with more
 * transfers in flight, so there is one code path for all of them.
 *
 *   core.engine() -> engine              (one per lua_State, made on first use)
 *   engine:perform(spec) -> response | nil, code, message
 *   engine:run(specs, n) -> { {res = response} | {code =, message =}, ... }
 *   engine:start(spec) -> transfer       (http_async.c)
 *   engine:poll(seconds) -> number of transfers that finished
 *   engine:pending() -> number of transfers in flight
 *   core.set_response_metatable(mt), core.parse_headers(raw)
 *
 * spec: { url = s, method = s, header_lines = { "Name: value", ... },
 *         body = s, timeout = seconds, connect_timeout = seconds,
 *         ca_file = path, max_body = bytes }   (read raw: no metamethods)
 * response: { status = n, body = s, _raw_headers = s, attempts = 1,
 *             redirect_url = s|nil }
 *           (res.headers is parsed from _raw_headers on first use, in Lua)
 *
 * No Lua code runs inside curl callbacks: they only append to C buffers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define ENGINE_KEY "connkit.http.engine.instance"
#define SLIST_MT "connkit.http.slist"
#define BATCH_MT "connkit.http.batch"
#define MAX_BODY_DEFAULT (256u * 1024u * 1024u)
#define KEEP_BUFFER_MAX (1024u * 1024u) /* larger buffers are not kept */

/* ------------------------------------------------------------------ */
/* Buffers and curl callbacks                                          */
/* ------------------------------------------------------------------ */

static int buffer_add(buffer *b, const char *p, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    char *np;
    while (cap < b->n + n + 1) cap *= 2;
    np = (char *)realloc(b->p, cap);
    if (np == NULL) return 0;
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
  return 1;
}

static void buffer_free(buffer *b) {
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}

/* Empties t's buffers; with keep, small ones keep their memory for the next
 * transfer. */
void http_release_buffers(transfer *t, int keep) {
  if (!keep || t->body.cap > KEEP_BUFFER_MAX) buffer_free(&t->body);
  if (!keep || t->head.cap > KEEP_BUFFER_MAX) buffer_free(&t->head);
  t->body.n = t->head.n = 0;
  free(t->redirect_url);
  t->redirect_url = NULL;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  transfer *t = (transfer *)ud;
  size_t len = size * n;
  if (t->body.n + len > t->max_body) {
    t->too_big = 1;
    return 0;
  }
  return buffer_add(&t->body, p, len) ? len : 0;
}

/* Header lines arrive one per call; a new status line (an interim 1xx reply
 * before the final one) starts the set again. */
static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  transfer *t = (transfer *)ud;
  size_t len = size * n;
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) t->head.n = 0;
  return buffer_add(&t->head, p, len) ? len : 0;
}

/* ------------------------------------------------------------------ */
/* Engine and easy handles                                             */
/* ------------------------------------------------------------------ */

engine *http_check_engine(lua_State *L, int i) {
  engine *e = (engine *)luaL_checkudata(L, i, ENGINE_MT);
  if (e->closed) luaL_error(L, "attempt to use a closed connkit engine");
  return e;
}

/* An easy handle from the free list (or a new one); *fresh says whether it
 * has no options set, so the constant ones must be set again. */
static CURL *take_easy(engine *e, int *fresh) {
  if (e->nfree > 0) {
    e->nfree--;
    *fresh = e->free_fresh[e->nfree];
    return e->free_easy[e->nfree];
  }
  *fresh = 1;
  return curl_easy_init();
}

/* Gives an easy handle back. Connections stay in the multi's pool. */
static void give_easy(engine *e, CURL *easy, int dirty) {
  if (e->nfree < FREE_MAX && !e->closed) {
    if (dirty) curl_easy_reset(easy);
    e->free_fresh[e->nfree] = (unsigned char)dirty;
    e->free_easy[e->nfree++] = easy;
  } else {
    curl_easy_cleanup(easy);
  }
}

static void list_remove(engine *e, transfer *t) {
  if (t->prev) t->prev->next = t->next;
  else e->running = t->next;
  if (t->next) t->next->prev = t->prev;
  t->prev = t->next = NULL;
  e->nrunning--;
}

/* Takes t out of the multi and gives its easy handle back. */
void http_detach(transfer *t) {
  engine *e = t->eng;
  if (e == NULL) return;
  if (t->easy) {
    curl_multi_remove_handle(e->multi, t->easy);
    give_easy(e, t->easy, t->dirty);
    t->easy = NULL;
  }
  if (t->owns_headers) curl_slist_free_all(t->headers);
  t->headers = NULL;
  t->owns_headers = 0;
  list_remove(e, t);
  t->eng = NULL;
}

/* Reads the multi's completion messages and finishes those transfers; a
 * finished transfer object is no longer anchored. Returns how many. */
static int drain(lua_State *L, int ei, engine *e) {
  CURLMsg *m;
  int left, finished = 0;
  while ((m = curl_multi_info_read(e->multi, &left)) != NULL) {
    transfer *t = NULL;
    if (m->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
    if (t == NULL) continue;
    t->result = m->data.result;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
    if (t->result == CURLE_OK && t->status >= 300 && t->status < 400) {
      char *loc = NULL;
      curl_easy_getinfo(t->easy, CURLINFO_REDIRECT_URL, &loc);
      if (loc != NULL) t->redirect_url = strdup(loc);
    }
    t->state = T_DONE;
    http_detach(t);
    if (t->anchored) {
      t->anchored = 0;
      lua_getiuservalue(L, ei, UV_RUNNING);
      lua_pushlightuserdata(L, t);
      lua_pushnil(L);
      lua_rawset(L, -3);
      lua_pop(L, 1);
    }
    finished++;
  }
  return finished;
}

/* Runs the multi once without waiting, then waits up to timeout_ms for
 * activity if nothing finished. Returns how many transfers finished. */
int http_step(lua_State *L, int ei, engine *e, int timeout_ms) {
  int still, done;
  curl_multi_perform(e->multi, &still);
  done = drain(L, ei, e);
  if (done == 0 && timeout_ms > 0 && e->nrunning > 0) {
    curl_multi_poll(e->multi, NULL, 0, timeout_ms, NULL);
    curl_multi_perform(e->multi, &still);
    done = drain(L, ei, e);
  }
  return done;
}

/* core.engine() -> the engine of this lua_State, created on first use. */
static int engine_get(lua_State *L) {
  engine *e;
  lua_getfield(L, LUA_REGISTRYINDEX, ENGINE_KEY);
  if (!lua_isnil(L, -1)) return 1;
  lua_pop(L, 1);
  e = (engine *)lua_newuserdatauv(L, sizeof *e, 1);
  memset(e, 0, sizeof *e);
  e->closed = 1;
  luaL_setmetatable(L, ENGINE_MT);
  lua_newtable(L);
  lua_setiuservalue(L, -2, UV_RUNNING);
  e->slist_ref = e->mt_ref = LUA_NOREF;
  e->multi = curl_multi_init();
  if (e->multi == NULL) return luaL_error(L, "curl_multi_init failed");
  /* the header list cache: weak keys (the lines tables) */
  lua_newtable(L);
  lua_newtable(L);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  e->slist_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, 64L);
  e->closed = 0;
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, ENGINE_KEY);
  return 1;
}

/* engine __gc: detaches every running transfer, frees the pool. */
static int engine_gc(lua_State *L) {
  engine *e = (engine *)luaL_checkudata(L, 1, ENGINE_MT);
  int i;
  if (e->multi == NULL) return 0;
  e->closed = 1;
  while (e->running) {
    transfer *t = e->running;
    t->state = T_CANCELLED;
    http_detach(t);
  }
  http_release_buffers(&e->sync, 0);
  for (i = 0; i < e->nfree; i++) curl_easy_cleanup(e->free_easy[i]);
  e->nfree = 0;
  curl_multi_cleanup(e->multi);
  e->multi = NULL;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Request specs -> curl options                                       */
/* ------------------------------------------------------------------ */

/* Spec fields are read raw: a request object's metamethods are for users. */
static void raw_field(lua_State *L, int spec, const char *k) {
  lua_pushstring(L, k);
  lua_rawget(L, spec);
}

static const char *opt_string(lua_State *L, int spec, const char *k,
                              size_t *len) {
  const char *s;
  raw_field(L, spec, k);
  s = lua_isnil(L, -1) ? NULL : lua_tolstring(L, -1, len);
  lua_pop(L, 1); /* the spec table still holds the string */
  return s;
}

static long opt_ms(lua_State *L, int spec, const char *k) {
  long ms = 0;
  raw_field(L, spec, k);
  if (lua_type(L, -1) == LUA_TNUMBER) ms = (long)(lua_tonumber(L, -1) * 1000.0);
  lua_pop(L, 1);
  return ms;
}

static int header_line_ok(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 0;
  return 1;
}

typedef struct {
  struct curl_slist *list;
} slist_box;

static int slist_gc(lua_State *L) {
  slist_box *b = (slist_box *)luaL_checkudata(L, 1, SLIST_MT);
  curl_slist_free_all(b->list);
  b->list = NULL;
  return 0;
}

/* Sets t->headers from the spec's header_lines. An account sends the same
 * lines table with every request until its token changes, so the curl list
 * built from a table is cached in a weak-keyed table (the lines tables are
 * never changed once built). Returns NULL, "header" for a line with CR, LF
 * or NUL, or another message. */
static const char *set_headers(lua_State *L, int spec, transfer *t) {
  int lines, i, n;
  slist_box *box;
  raw_field(L, spec, "header_lines");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  lines = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->owner->slist_ref);
  lua_pushvalue(L, lines);
  lua_rawget(L, -2);
  box = (slist_box *)lua_touserdata(L, -1);
  if (box != NULL) {
    t->headers = box->list;
    t->owns_headers = 0;
    lua_pop(L, 3);
    return NULL;
  }
  lua_pop(L, 1);
  box = (slist_box *)lua_newuserdatauv(L, sizeof *box, 0);
  box->list = NULL;
  luaL_setmetatable(L, SLIST_MT);
  n = (int)lua_rawlen(L, lines);
  for (i = 1; i <= n; i++) {
    size_t hl;
    const char *line;
    struct curl_slist *nl;
    lua_rawgeti(L, lines, i);
    line = lua_tolstring(L, -1, &hl);
    if (line == NULL || !header_line_ok(line, hl)) {
      lua_pop(L, 4);
      return "header";
    }
    nl = curl_slist_append(box->list, line);
    lua_pop(L, 1);
    if (nl == NULL) {
      lua_pop(L, 3);
      return "out of memory";
    }
    box->list = nl;
  }
  /* cache[lines] = box */
  lua_pushvalue(L, lines);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  t->headers = box->list;
  t->owns_headers = 0;
  lua_pop(L, 3);
  return NULL;
}

/* Sets the options of the spec at index spec on t->easy; options that never
 * change are set only on a fresh handle. Returns NULL or what is wrong. */
static const char *setup(lua_State *L, int spec, transfer *t, int fresh) {
  CURL *h = t->easy;
  size_t blen = 0;
  const char *url = opt_string(L, spec, "url", NULL);
  const char *method = opt_string(L, spec, "method", NULL);
  const char *body = opt_string(L, spec, "body", &blen);
  const char *ca = opt_string(L, spec, "ca_file", NULL);
  long timeout = opt_ms(L, spec, "timeout");
  long ctimeout = opt_ms(L, spec, "connect_timeout");
  const char *bad;

  if (url == NULL) return "spec.url is missing";
  if (method == NULL) method = "GET";
  raw_field(L, spec, "max_body");
  t->max_body = lua_isnumber(L, -1) && lua_tointeger(L, -1) > 0
                    ? (size_t)lua_tointeger(L, -1)
                    : MAX_BODY_DEFAULT;
  lua_pop(L, 1);
  bad = set_headers(L, spec, t);
  if (bad != NULL) return bad;

  if (fresh) {
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  }
  curl_easy_setopt(h, CURLOPT_PRIVATE, (char *)t);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, (void *)t);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, (void *)t);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, t->headers); /* NULL clears it */
  /* always set (0 = none), so a reused handle never keeps an old value */
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout > 0 ? timeout : 0L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ctimeout > 0 ? ctimeout : 0L);
  t->dirty = ca != NULL || body != NULL || strcmp(method, "GET") != 0;
  if (ca != NULL) {
    /* a CA file replaces the default store; dropping the default CA path
     * saves re-reading it on every new TLS connection */
    curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
  }
  if (strcmp(method, "GET") == 0 && body == NULL) {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else {
    if (strcmp(method, "POST") != 0)
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body != NULL || strcmp(method, "POST") == 0) {
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
    }
  }
  return NULL;
}

/* Starts t (its buffers empty) for the spec at index spec: takes an easy
 * handle, sets it up, adds it to the multi. Returns NULL, or what went
 * wrong with t detached again ("header" for a bad header line). The spec
 * (and its body string) must stay alive until t is done. */
const char *http_attach(lua_State *L, engine *e, int spec, transfer *t) {
  const char *bad;
  int fresh;
  CURLMcode mc;
  t->easy = take_easy(e, &fresh);
  if (t->easy == NULL) return "curl_easy_init failed";
  t->eng = t->owner = e;
  t->prev = NULL;
  t->next = e->running;
  if (e->running) e->running->prev = t;
  e->running = t;
  e->nrunning++;
  t->too_big = 0;
  t->errbuf[0] = '\0';
  t->result = CURLE_OK;
  t->status = 0;
  bad = setup(L, spec, t, fresh);
  if (bad == NULL) {
    mc = curl_multi_add_handle(e->multi, t->easy);
    if (mc != CURLM_OK) bad = curl_multi_strerror(mc);
  }
  if (bad != NULL) {
    t->dirty = 1;
    http_detach(t);
    t->state = T_IDLE;
    return bad;
  }
  t->state = T_RUNNING;
  return NULL;
}

/* Turns a failed attach into nil, code, message (or raises for a spec the
 * Lua side should never build). */
int http_fail_attach(lua_State *L, const char *bad) {
  if (strcmp(bad, "header") == 0)
    return ck_fail(L, "header",
                   "a header value holds CR, LF or NUL; request not sent");
  if (strcmp(bad, "spec.url is missing") == 0)
    return luaL_error(L, "connkit: bad request spec: %s", bad);
  return ck_fail(L, "internal", "%s", bad);
}

/* ------------------------------------------------------------------ */
/* Replies                                                             */
/* ------------------------------------------------------------------ */

/* The stable error code for a curl result. */
static const char *code_of(CURLcode rc) {
  switch (rc) {
  case CURLE_OPERATION_TIMEDOUT:
    return "timeout";
  case CURLE_COULDNT_CONNECT:
    return "connect";
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    return "dns";
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_USE_SSL_FAILED:
    return "tls";
  case CURLE_URL_MALFORMAT:
  case CURLE_UNSUPPORTED_PROTOCOL:
    return "url";
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
    return "network";
  case CURLE_OUT_OF_MEMORY:
    return "internal";
  default:
    return "http";
  }
}

/* Pushes the outcome of the finished transfer t: a response table, or
 * nil, code, message. Returns the number of values pushed. The buffers are
 * emptied (not freed). */
int http_push_reply(lua_State *L, transfer *t) {
  if (t->state == T_CANCELLED)
    return ck_fail(L, "cancelled", "the request was cancelled");
  if (t->result != CURLE_OK) {
    int n;
    if (t->too_big)
      n = ck_fail(L, "too_large", "the response body is larger than %zu bytes",
                  t->max_body);
    else
      n = ck_fail(L, code_of(t->result), "%s",
                  t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result));
    http_release_buffers(t, 1);
    return n;
  }
  /* status, _raw_headers, body, and the attempts the Lua side adds: sized
   * for five, so adding it does not rehash */
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)t->status);
  lua_setfield(L, -2, "status");
  lua_pushinteger(L, 1); /* one transfer; the Lua side counts retries */
  lua_setfield(L, -2, "attempts");
  lua_pushlstring(L, t->head.p ? t->head.p : "", t->head.n);
  lua_setfield(L, -2, "_raw_headers");
  lua_pushlstring(L, t->body.p ? t->body.p : "", t->body.n);
  lua_setfield(L, -2, "body");
  if (t->redirect_url) {
    lua_pushstring(L, t->redirect_url);
    lua_setfield(L, -2, "redirect_url");
  }
  if (t->owner != NULL && t->owner->mt_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->owner->mt_ref);
    lua_setmetatable(L, -2);
  }
  http_release_buffers(t, 1);
  return 1;
}

/* Pushes the header block as a table: lower-case names, repeats joined with
 * ", ". The status line and the blank line are skipped. */
static void push_headers(lua_State *L, const char *p, size_t len) {
  const char *end = p + len;
  lua_createtable(L, 0, 12);
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = eol ? eol : end, *colon, *v, *ve;
    char name[256];
    size_t nl, i;
    if (line_end > p && line_end[-1] == '\r') line_end--;
    colon = memchr(p, ':', (size_t)(line_end - p));
    if (colon != NULL && colon > p && (size_t)(colon - p) < sizeof name &&
        *p != ' ' && *p != '\t') {
      nl = (size_t)(colon - p);
      for (i = 0; i < nl; i++) {
        char c = p[i];
        name[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
      }
      v = colon + 1;
      while (v < line_end && (*v == ' ' || *v == '\t')) v++;
      ve = line_end;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      lua_pushlstring(L, name, nl);
      lua_pushvalue(L, -1);
      lua_rawget(L, -3);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      } else {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      }
      lua_rawset(L, -3);
    }
    p = eol ? eol + 1 : end;
  }
}

/* core.parse_headers(raw) -> { lower-case name = value } */
static int parse_headers(lua_State *L) {
  size_t n;
  const char *raw = luaL_checklstring(L, 1, &n);
  push_headers(L, raw, n);
  return 1;
}

/* core.set_response_metatable(mt): the metatable of every reply of this
 * state's engine. */
static int set_response_metatable(lua_State *L) {
  engine *e;
  luaL_checktype(L, 1, LUA_TTABLE);
  engine_get(L);
  e = (engine *)lua_touserdata(L, -1);
  luaL_unref(L, LUA_REGISTRYINDEX, e->mt_ref);
  lua_pushvalue(L, 1);
  e->mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Blocking requests and batches                                       */
/* ------------------------------------------------------------------ */

/* engine:perform(spec) -> response | nil, code, message.
 * Uses the engine's own transfer: no Lua runs while it is in flight, so one
 * is enough, and its buffers serve the next request. */
static int engine_perform(lua_State *L) {
  engine *e = http_check_engine(L, 1);
  transfer *t = &e->sync;
  const char *bad;
  luaL_checktype(L, 2, LUA_TTABLE);
  if (t->state == T_RUNNING) return luaL_error(L, "connkit: perform re-entered");
  bad = http_attach(L, e, 2, t);
  if (bad != NULL) return http_fail_attach(L, bad);
  while (t->state == T_RUNNING && !e->closed) http_step(L, 1, e, 1000);
  return http_push_reply(L, t);
}

typedef struct {
  engine *e;
  int n;
  transfer slots[1]; /* n of them */
} batch;

/* batch __gc: a Lua error while a batch ran leaves nothing in the multi. */
static int batch_gc(lua_State *L) {
  batch *b = (batch *)luaL_checkudata(L, 1, BATCH_MT);
  int i;
  for (i = 0; i < b->n; i++) {
    http_detach(&b->slots[i]);
    http_release_buffers(&b->slots[i], 0);
  }
  b->n = 0;
  return 0;
}

/* Stores the outcome of slot t into results[t->index] (at index ri) as
 * { res = response } or { code = c, message = m }. */
static void store_outcome(lua_State *L, int ri, transfer *t) {
  int n = http_push_reply(L, t);
  if (n == 1) {
    lua_createtable(L, 0, 1);
    lua_insert(L, -2);
    lua_setfield(L, -2, "res");
  } else {
    lua_createtable(L, 0, 2);
    lua_insert(L, -3);
    lua_setfield(L, -3, "message");
    lua_setfield(L, -2, "code");
    lua_remove(L, -2); /* the nil */
  }
  lua_rawseti(L, ri, t->index);
  t->state = T_IDLE;
}

/* engine:run(specs, n) -> results: runs every spec with up to n in flight
 * and returns their outcomes in input order. The specs table keeps every
 * spec (and body) alive while its transfer runs. */
static int engine_run(lua_State *L) {
  engine *e = http_check_engine(L, 1);
  int total, n, next = 1, inflight = 0, i, ri, bi;
  batch *b;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = (int)luaL_optinteger(L, 3, 8);
  luaL_argcheck(L, n >= 1 && n <= 1024, 3, "concurrency must be 1-1024");
  total = (int)lua_rawlen(L, 2);
  lua_createtable(L, total, 0);
  ri = lua_gettop(L);
  b = (batch *)lua_newuserdatauv(L, sizeof(batch) + sizeof(transfer) * (size_t)(n - 1), 0);
  memset(b, 0, sizeof(batch) + sizeof(transfer) * (size_t)(n - 1));
  b->e = e;
  luaL_setmetatable(L, BATCH_MT);
  b->n = n;
  bi = lua_gettop(L);
  while (next <= total || inflight > 0) {
    for (i = 0; i < n && next <= total; i++) {
      transfer *t = &b->slots[i];
      const char *bad;
      if (t->state != T_IDLE) continue;
      lua_rawgeti(L, 2, next);
      if (!lua_istable(L, -1)) return luaL_error(L, "run: item %d is not a request", next);
      t->index = next++;
      bad = http_attach(L, e, lua_gettop(L), t);
      lua_pop(L, 1);
      if (bad == NULL) {
        inflight++;
      } else {
        http_fail_attach(L, bad);
        lua_createtable(L, 0, 2);
        lua_insert(L, -3);
        lua_setfield(L, -3, "message");
        lua_setfield(L, -2, "code");
        lua_remove(L, -2);
        lua_rawseti(L, ri, t->index);
      }
    }
    if (inflight == 0) continue;
    http_step(L, 1, e, 1000);
    for (i = 0; i < n; i++) {
      transfer *t = &b->slots[i];
      if (t->state == T_DONE || t->state == T_CANCELLED) {
        store_outcome(L, ri, t);
        inflight--;
      }
    }
  }
  lua_pushvalue(L, ri);
  (void)bi;
  return 1;
}

static int engine_poll(lua_State *L) {
  engine *e = http_check_engine(L, 1);
  lua_Number s = luaL_optnumber(L, 2, 0);
  int ms = s > 0 ? (int)(s * 1000.0) : 0;
  lua_pushinteger(L, http_step(L, 1, e, ms));
  return 1;
}

static int engine_pending(lua_State *L) {
  engine *e = http_check_engine(L, 1);
  lua_pushinteger(L, e->nrunning);
  return 1;
}

void http_open(lua_State *L) {
  static const luaL_Reg engine_methods[] = {{"perform", engine_perform},
                                            {"run", engine_run},
                                            {"poll", engine_poll},
                                            {"pending", engine_pending},
                                            {NULL, NULL}};
  static const luaL_Reg engine_meta[] = {{"__gc", engine_gc}, {NULL, NULL}};
  static const luaL_Reg slist_meta[] = {{"__gc", slist_gc}, {NULL, NULL}};
  static const luaL_Reg batch_meta[] = {{"__gc", batch_gc}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
      {"engine", engine_get},
      {"set_response_metatable", set_response_metatable},
      {"parse_headers", parse_headers},
      {NULL, NULL}};
  compat_newclass(L, ENGINE_MT, engine_methods, engine_meta);
  compat_newclass(L, SLIST_MT, NULL, slist_meta);
  compat_newclass(L, BATCH_MT, NULL, batch_meta);
  luaL_setfuncs(L, funcs, 0);
  http_async_open(L);
}
