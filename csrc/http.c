/*
 * http.c - the transfer engine: one curl multi handle per lua_State.
 *
 * The multi owns the connection pool, DNS cache and TLS sessions, so every
 * account shares them. Easy handles are kept in a free list and reset, not
 * re-created. A blocking request is one transfer on the engine, waited on
 * with curl_multi_poll; concurrent requests are the same engine with more
 * transfers in flight, so there is one code path for both.
 *
 *   core.engine() -> engine              (one per lua_State, made on first use)
 *   engine:perform(spec) -> response | nil, code, message
 *   engine:start(spec) -> transfer | nil, code, message
 *   engine:poll(seconds) -> number of transfers that finished
 *   engine:pending() -> number of transfers in flight
 *   transfer:done() -> boolean
 *   transfer:result() -> response | nil, code, message   (drives until done)
 *   transfer:cancel()
 *   core.set_response_metatable(mt)      metatable given to every response
 *
 * spec: { url = s, method = s, header_lines = { "Name: value", ... }, body = s,
 *         timeout = seconds, connect_timeout = seconds, ca_file = path }
 * response: { status = n, headers = { lower-case name = value }, body = s,
 *             redirect_url = s|nil }
 *
 * No Lua code runs inside curl callbacks: they only append to C buffers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "connkit.h"

#define ENGINE_MT "connkit.http.engine"
#define TRANSFER_MT "connkit.http.transfer"
#define ENGINE_KEY "connkit.http.engine.instance"
#define RESPONSE_MT_KEY "connkit.http.response_mt"
#define FREE_MAX 32
#define MAX_BODY_DEFAULT (256u * 1024u * 1024u)

/* user values of a transfer */
#define UV_SPEC 1   /* keeps the body string alive while curl reads it */
#define UV_ENGINE 2 /* keeps the engine (multi) alive */
#define UV_RESULT 3 /* the response table, once built */

/* user value of the engine: the table anchoring running transfers */
#define UV_RUNNING 1

typedef struct {
  char *p;
  size_t n, cap;
} buffer;

struct engine;

enum tstate { T_RUNNING, T_DONE, T_CANCELLED, T_CLOSED };

typedef struct transfer {
  struct engine *eng; /* set while the easy handle is in the multi */
  CURL *easy;
  struct curl_slist *headers;
  buffer body, head;
  size_t max_body;
  int too_big;
  int dirty; /* set an option beyond the plain-GET ones: reset the handle after */
  enum tstate state;
  CURLcode result;
  long status;
  char *redirect_url;
  struct transfer *prev, *next; /* the engine's running list */
  char errbuf[CURL_ERROR_SIZE];
} transfer;

typedef struct engine {
  CURLM *multi;
  CURL *free_easy[FREE_MAX];
  int nfree;
  transfer *running;
  int nrunning;
  int closed;
} engine;

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
/* Engine                                                              */
/* ------------------------------------------------------------------ */

static engine *check_engine(lua_State *L, int i) {
  engine *e = (engine *)luaL_checkudata(L, i, ENGINE_MT);
  if (e->closed) luaL_error(L, "attempt to use a closed connkit engine");
  return e;
}

static CURL *engine_take_easy(engine *e) {
  if (e->nfree > 0) return e->free_easy[--e->nfree];
  return curl_easy_init();
}

/* Gives an easy handle back: reset (options cleared, connections stay in the
 * multi's pool) and kept for the next transfer. */
static void engine_give_easy(engine *e, CURL *easy, int dirty) {
  if (e->nfree < FREE_MAX && !e->closed) {
    if (dirty) curl_easy_reset(easy);
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
static void transfer_detach(transfer *t) {
  engine *e = t->eng;
  if (e == NULL) return;
  if (t->easy) {
    curl_multi_remove_handle(e->multi, t->easy);
    engine_give_easy(e, t->easy, t->dirty);
    t->easy = NULL;
  }
  curl_slist_free_all(t->headers);
  t->headers = NULL;
  list_remove(e, t);
  t->eng = NULL;
}

/* Removes the anchor that kept a running transfer from being collected.
 * The engine is at index ei; the transfer is found by its light pointer. */
static void unanchor(lua_State *L, int ei, transfer *t) {
  lua_getiuservalue(L, ei, UV_RUNNING);
  lua_pushlightuserdata(L, t);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Reads the multi's completion messages and finishes those transfers.
 * Returns how many finished. */
static int engine_drain(lua_State *L, int ei, engine *e) {
  CURLMsg *m;
  int left, finished = 0;
  while ((m = curl_multi_info_read(e->multi, &left)) != NULL) {
    transfer *t = NULL;
    if (m->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
    if (t == NULL) continue;
    t->result = m->data.result;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
    if (t->result == CURLE_OK) {
      char *loc = NULL;
      curl_easy_getinfo(t->easy, CURLINFO_REDIRECT_URL, &loc);
      if (loc != NULL) t->redirect_url = strdup(loc);
    }
    t->state = T_DONE;
    transfer_detach(t);
    unanchor(L, ei, t);
    finished++;
  }
  return finished;
}

/* Runs the multi once without waiting, then waits up to timeout_ms for
 * activity if nothing finished. */
static int engine_step(lua_State *L, int ei, engine *e, int timeout_ms) {
  int still, done;
  curl_multi_perform(e->multi, &still);
  done = engine_drain(L, ei, e);
  if (done == 0 && timeout_ms > 0 && e->nrunning > 0) {
    curl_multi_poll(e->multi, NULL, 0, timeout_ms, NULL);
    curl_multi_perform(e->multi, &still);
    done = engine_drain(L, ei, e);
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
  e->multi = curl_multi_init();
  if (e->multi == NULL) return luaL_error(L, "curl_multi_init failed");
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
  if (e->closed && e->multi == NULL) return 0;
  e->closed = 1;
  while (e->running) {
    transfer *t = e->running;
    t->state = T_CANCELLED;
    transfer_detach(t);
  }
  for (i = 0; i < e->nfree; i++) curl_easy_cleanup(e->free_easy[i]);
  e->nfree = 0;
  if (e->multi) curl_multi_cleanup(e->multi);
  e->multi = NULL;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Transfers                                                           */
/* ------------------------------------------------------------------ */

static transfer *check_transfer(lua_State *L, int i) {
  transfer *t = (transfer *)luaL_checkudata(L, i, TRANSFER_MT);
  if (t->state == T_CLOSED) luaL_error(L, "attempt to use a closed transfer");
  return t;
}

static void transfer_free_buffers(transfer *t) {
  buffer_free(&t->body);
  buffer_free(&t->head);
  free(t->redirect_url);
  t->redirect_url = NULL;
}

static int transfer_gc(lua_State *L) {
  transfer *t = (transfer *)luaL_checkudata(L, 1, TRANSFER_MT);
  if (t->state == T_CLOSED) return 0;
  transfer_detach(t);
  transfer_free_buffers(t);
  curl_slist_free_all(t->headers);
  t->headers = NULL;
  t->state = T_CLOSED;
  return 0;
}

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

/* Sets every curl option of the spec at index spec on t->easy.
 * Returns NULL, or a message for a spec the Lua side should never build. */
static const char *transfer_setup(lua_State *L, int spec, transfer *t) {
  CURL *h = t->easy;
  size_t ulen = 0, blen = 0, mlen = 0;
  const char *url = opt_string(L, spec, "url", &ulen);
  const char *method = opt_string(L, spec, "method", &mlen);
  const char *body = opt_string(L, spec, "body", &blen);
  const char *ca = opt_string(L, spec, "ca_file", NULL);
  long timeout = opt_ms(L, spec, "timeout");
  long ctimeout = opt_ms(L, spec, "connect_timeout");
  int i, n;

  if (url == NULL) return "spec.url is missing";
  if (method == NULL) method = "GET";

  raw_field(L, spec, "header_lines");
  if (lua_istable(L, -1)) {
    n = (int)lua_rawlen(L, -1);
    for (i = 1; i <= n; i++) {
      size_t hl;
      const char *line;
      struct curl_slist *nl;
      lua_rawgeti(L, -1, i);
      line = lua_tolstring(L, -1, &hl);
      if (line == NULL || !header_line_ok(line, hl)) {
        lua_pop(L, 2);
        return "header";
      }
      nl = curl_slist_append(t->headers, line);
      lua_pop(L, 1);
      if (nl == NULL) {
        lua_pop(L, 1);
        return "out of memory";
      }
      t->headers = nl;
    }
  }
  lua_pop(L, 1);

  curl_easy_setopt(h, CURLOPT_PRIVATE, (char *)t);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, (void *)t);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, (void *)t);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, t->headers); /* NULL clears it */
  t->dirty = ca != NULL || body != NULL || strcmp(method, "GET") != 0;
  /* always set (0 = none / curl's default), so they never leak */
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout > 0 ? timeout : 0L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ctimeout > 0 ? ctimeout : 0L);
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

/* engine:start(spec) -> transfer | nil, code, message.
 * The transfer keeps the spec (and so the body string) and the engine alive
 * through its user values, and is anchored in the engine while it runs. */
static int engine_start_at(lua_State *L, int ei, engine *e, int spec) {
  transfer *t;
  const char *bad;
  CURLMcode mc;
  lua_Integer maxb;
  luaL_checktype(L, spec, LUA_TTABLE);
  t = (transfer *)lua_newuserdatauv(L, sizeof *t, 3);
  memset(t, 0, sizeof *t);
  t->state = T_CLOSED;
  luaL_setmetatable(L, TRANSFER_MT);
  lua_pushvalue(L, spec);
  lua_setiuservalue(L, -2, UV_SPEC);
  lua_pushvalue(L, ei);
  lua_setiuservalue(L, -2, UV_ENGINE);
  t->state = T_CANCELLED; /* not running yet: safe for __gc */

  raw_field(L, spec, "max_body");
  maxb = lua_isnumber(L, -1) ? lua_tointeger(L, -1) : 0;
  lua_pop(L, 1);
  t->max_body = maxb > 0 ? (size_t)maxb : MAX_BODY_DEFAULT;

  t->easy = engine_take_easy(e);
  if (t->easy == NULL) return ck_fail(L, "internal", "curl_easy_init failed");
  t->eng = e;
  t->prev = NULL;
  t->next = e->running;
  if (e->running) e->running->prev = t;
  e->running = t;
  e->nrunning++;

  bad = transfer_setup(L, spec, t);
  if (bad != NULL) {
    transfer_detach(t);
    if (strcmp(bad, "header") == 0)
      return ck_fail(L, "header",
                     "a header value holds CR, LF or NUL; request not sent");
    return luaL_error(L, "connkit: bad request spec: %s", bad);
  }
  mc = curl_multi_add_handle(e->multi, t->easy);
  if (mc != CURLM_OK) {
    transfer_detach(t);
    return ck_fail(L, "internal", "curl_multi_add_handle: %s",
                   curl_multi_strerror(mc));
  }
  t->state = T_RUNNING;
  lua_getiuservalue(L, ei, UV_RUNNING);
  lua_pushlightuserdata(L, t);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return 1;
}

static int engine_start(lua_State *L) {
  engine *e = check_engine(L, 1);
  return engine_start_at(L, 1, e, 2);
}

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

/* Pushes the header block as a table: lower-case names, repeats joined with
 * ", ". The status line and the blank line are skipped. */
static void push_headers(lua_State *L, const buffer *b) {
  const char *p = b->p, *end = b->p + b->n;
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

/* Pushes the outcome of a finished transfer at index ti: the response table
 * (built once, then cached), or nil, code, message. */
static int transfer_push_result(lua_State *L, int ti, transfer *t) {
  if (t->state == T_CANCELLED)
    return ck_fail(L, "cancelled", "the request was cancelled");
  if (lua_getiuservalue(L, ti, UV_RESULT) == LUA_TTABLE) return 1;
  lua_pop(L, 1);
  if (t->result != CURLE_OK) {
    const char *msg = t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result);
    if (t->too_big)
      return ck_fail(L, "too_large", "the response body is larger than %zu bytes",
                     t->max_body);
    return ck_fail(L, code_of(t->result), "%s", msg);
  }
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)t->status);
  lua_setfield(L, -2, "status");
  lua_pushlstring(L, t->head.p ? t->head.p : "", t->head.n);
  lua_setfield(L, -2, "_raw_headers"); /* parsed on first res.headers */
  lua_pushlstring(L, t->body.p ? t->body.p : "", t->body.n);
  lua_setfield(L, -2, "body");
  if (t->redirect_url) {
    lua_pushstring(L, t->redirect_url);
    lua_setfield(L, -2, "redirect_url");
  }
  lua_getfield(L, LUA_REGISTRYINDEX, RESPONSE_MT_KEY);
  if (lua_istable(L, -1)) lua_setmetatable(L, -2);
  else lua_pop(L, 1);
  transfer_free_buffers(t);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, ti, UV_RESULT);
  return 1;
}

/* Drives the engine until the transfer at index ti is finished. */
static void transfer_wait(lua_State *L, int ti, transfer *t) {
  int ei;
  engine *e;
  if (t->state != T_RUNNING) return;
  lua_getiuservalue(L, ti, UV_ENGINE);
  ei = lua_gettop(L);
  e = (engine *)lua_touserdata(L, ei);
  while (t->state == T_RUNNING && !e->closed) engine_step(L, ei, e, 1000);
  lua_pop(L, 1);
}

/* engine:perform(spec) -> response | nil, code, message */
static int engine_perform(lua_State *L) {
  engine *e = check_engine(L, 1);
  int ti, nret = engine_start_at(L, 1, e, 2);
  if (nret != 1) return nret;
  ti = lua_gettop(L);
  transfer_wait(L, ti, (transfer *)lua_touserdata(L, ti));
  return transfer_push_result(L, ti, (transfer *)lua_touserdata(L, ti));
}

/* engine:poll(seconds) -> number of transfers that finished in this call.
 * With 0 it never blocks. */
static int engine_poll(lua_State *L) {
  engine *e = check_engine(L, 1);
  lua_Number s = luaL_optnumber(L, 2, 0);
  int ms = s > 0 ? (int)(s * 1000.0) : 0;
  lua_pushinteger(L, engine_step(L, 1, e, ms));
  return 1;
}

static int engine_pending(lua_State *L) {
  engine *e = check_engine(L, 1);
  lua_pushinteger(L, e->nrunning);
  return 1;
}

static int transfer_done(lua_State *L) {
  transfer *t = check_transfer(L, 1);
  lua_pushboolean(L, t->state != T_RUNNING);
  return 1;
}

static int transfer_result(lua_State *L) {
  transfer *t = check_transfer(L, 1);
  transfer_wait(L, 1, t);
  return transfer_push_result(L, 1, t);
}

/* transfer:cancel(): stops a running transfer; its result is then
 * nil, "cancelled". */
static int transfer_cancel(lua_State *L) {
  transfer *t = check_transfer(L, 1);
  if (t->state == T_RUNNING) {
    lua_getiuservalue(L, 1, UV_ENGINE);
    t->state = T_CANCELLED;
    transfer_detach(t);
    unanchor(L, lua_gettop(L), t);
    lua_pop(L, 1);
  }
  return 0;
}

static int transfer_tostring(lua_State *L) {
  transfer *t = (transfer *)luaL_checkudata(L, 1, TRANSFER_MT);
  static const char *const names[] = {"running", "done", "cancelled",
                                      "closed"};
  lua_pushfstring(L, "connkit.transfer (%s)", names[t->state]);
  return 1;
}

/* core.parse_headers(raw) -> { lower-case name = value } */
static int parse_headers(lua_State *L) {
  buffer b;
  b.p = (char *)(uintptr_t)luaL_checklstring(L, 1, &b.n);
  b.cap = b.n;
  push_headers(L, &b);
  return 1;
}

static int set_response_metatable(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushvalue(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, RESPONSE_MT_KEY);
  return 0;
}

void http_open(lua_State *L) {
  static const luaL_Reg engine_methods[] = {{"perform", engine_perform},
                                            {"start", engine_start},
                                            {"poll", engine_poll},
                                            {"pending", engine_pending},
                                            {NULL, NULL}};
  static const luaL_Reg engine_meta[] = {{"__gc", engine_gc}, {NULL, NULL}};
  static const luaL_Reg transfer_methods[] = {{"done", transfer_done},
                                              {"result", transfer_result},
                                              {"cancel", transfer_cancel},
                                              {NULL, NULL}};
  static const luaL_Reg transfer_meta[] = {{"__gc", transfer_gc},
                                           {"__tostring", transfer_tostring},
                                           {NULL, NULL}};
  static const luaL_Reg funcs[] = {
      {"engine", engine_get},
      {"set_response_metatable", set_response_metatable},
      {"parse_headers", parse_headers},
      {NULL, NULL}};
  compat_newclass(L, ENGINE_MT, engine_methods, engine_meta);
  compat_newclass(L, TRANSFER_MT, transfer_methods, transfer_meta);
  luaL_setfuncs(L, funcs, 0);
}
