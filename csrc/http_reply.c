/*
 * http_reply.c - a finished transfer made into what Lua gets: the response
 * table (status, body, the raw header block, url, time, ...) or nil, code,
 * message; and core.parse_headers, which makes res.headers from the raw
 * block on first use (see http.c's header for the response's fields).
 */
#include <string.h>

#include "http.h"

/* Starts a last_string (see push_reused) at "". */
void http_last_string_init(lua_State *L, last_string *ls) {
  lua_pushliteral(L, "");
  ls->p = lua_tolstring(L, -1, &ls->len);
  ls->ref = luaL_ref(L, LUA_REGISTRYINDEX);
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
  case CURLE_SSL_CERTPROBLEM: /* the client certificate (mTLS) */
    return "client_cert";
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
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
  case CURLE_WEIRD_SERVER_REPLY:
    return "protocol";
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

/* Pushes the string p, len. Most replies in a row come from the same URL
 * (an account calls one endpoint again and again) and carry the same header
 * block until the Date line changes, and often the same small body, so the
 * engine keeps the last string of each (ls; NULL without an engine): the
 * same bytes push it again without a new string (allocation, a copy, and
 * garbage to collect; a Lua string is immutable, so sharing it is
 * invisible). A different one becomes the last. */
static void push_reused(lua_State *L, last_string *ls, const char *p, size_t len) {
  if (ls == NULL || ls->ref == LUA_NOREF) {
    lua_pushlstring(L, p, len);
  } else if (ls->len == len && memcmp(ls->p, p, len) == 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->ref);
  } else {
    lua_pushlstring(L, p, len);
    lua_pushvalue(L, -1);
    lua_rawseti(L, LUA_REGISTRYINDEX, ls->ref);
    ls->p = lua_tolstring(L, -1, &ls->len);
  }
}

/* Bodies up to this size are compared with the last one (push_reused);
 * bigger ones are rarely the same, and are pushed as they are. */
#define REUSE_BODY_MAX 16384

/* Pushes the outcome of the finished transfer t: a response table, or
 * nil, code, message. Returns the number of values pushed. The buffers are
 * emptied (not freed). */
int http_push_reply(lua_State *L, transfer *t) {
  engine *e = t->owner;
  if (t->state == T_CANCELLED)
    return ck_fail(L, "cancelled", "the request was cancelled");
  if (t->result != CURLE_OK) {
    int n;
    if (t->too_big)
      n = ck_fail(L, "too_large", "the response body is larger than %zu bytes",
                  t->max_body);
    else if (t->fail != SINK_OK)
      n = http_sink_push_fail(L, t);
    else
      n = ck_fail(L, code_of(t->result), "%s",
                  t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result));
    http_release_buffers(t, 1);
    return n;
  }
  /* status, _raw_headers, body and room for redirect_url; attempts is 1
   * unless the Lua side sets it (the metatable gives the 1) */
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)t->status);
  lua_setfield(L, -2, "status");
  push_reused(L, e ? &e->last_head : NULL, t->head.p ? t->head.p : "", t->head.n);
  lua_setfield(L, -2, "_raw_headers");
  if (t->route != ROUTE_FILE && t->route != ROUTE_FUNC) {
    if (t->body.n <= REUSE_BODY_MAX)
      push_reused(L, e ? &e->last_body : NULL, t->body.p ? t->body.p : "", t->body.n);
    else
      lua_pushlstring(L, t->body.p, t->body.n);
    lua_setfield(L, -2, "body"); /* (size: #body, through the metatable) */
  } else { /* streamed: no body */
    lua_pushinteger(L, (lua_Integer)t->size);
    lua_setfield(L, -2, "size");
  }
  if (t->url != NULL) {
    push_reused(L, e ? &e->last_url : NULL, t->url, t->url_len);
    lua_setfield(L, -2, "url");
  }
  lua_pushnumber(L, (lua_Number)t->time);
  lua_setfield(L, -2, "time");
  if (t->http_version != CURL_HTTP_VERSION_1_1) { /* "1.1" through the metatable */
    lua_pushstring(L, t->http_version == CURL_HTTP_VERSION_1_0 ? "1.0"
                      : t->http_version == CURL_HTTP_VERSION_3 ? "3"
                                                               : "2");
    lua_setfield(L, -2, "http_version");
  }
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
int http_parse_headers(lua_State *L) {
  size_t n;
  const char *raw = luaL_checklstring(L, 1, &n);
  push_headers(L, raw, n);
  return 1;
}
