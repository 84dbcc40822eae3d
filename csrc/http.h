/*
 * http.h - what http.c (the engine, transfers, replies) and http_async.c
 * (transfer objects for start/poll) share.
 */
#ifndef CONNKIT_HTTP_H
#define CONNKIT_HTTP_H

#include <curl/curl.h>

#include "connkit.h"

#define ENGINE_MT "connkit.http.engine"
#define TRANSFER_MT "connkit.http.transfer"
#define FREE_MAX 32

typedef struct {
  char *p;
  size_t n, cap;
} buffer;

struct engine;

enum tstate { T_IDLE, T_RUNNING, T_DONE, T_CANCELLED, T_CLOSED };

/* One request on the engine. Blocking requests use the engine's own
 * transfer, connkit.all a block of them, req:start() a userdata each. */
typedef struct transfer {
  struct engine *eng;   /* set while the easy handle is in the multi */
  struct engine *owner; /* the engine it last ran on (for its registry refs) */
  CURL *easy;
  struct curl_slist *headers;
  int owns_headers; /* 0: the list belongs to the header cache */
  buffer body, head;
  size_t max_body;
  int too_big;
  int dirty;    /* set options beyond a plain GET's: reset the handle after */
  int anchored; /* a userdata kept alive by the engine while it runs */
  int index;    /* connkit.all: position in the input */
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
  unsigned char free_fresh[FREE_MAX]; /* reset since its last transfer */
  int nfree;
  transfer *running;
  int nrunning;
  int closed;
  int slist_ref; /* registry refs: the header list cache, the reply metatable */
  int mt_ref;
  transfer sync; /* the transfer of blocking requests, buffers kept */
} engine;

/* user value of the engine: the table anchoring running transfer objects */
#define UV_RUNNING 1

CK_HIDDEN engine *http_check_engine(lua_State *L, int i);
CK_HIDDEN const char *http_attach(lua_State *L, engine *e, int spec,
                                  transfer *t);
CK_HIDDEN void http_detach(transfer *t);
CK_HIDDEN int http_step(lua_State *L, int ei, engine *e, int timeout_ms);
CK_HIDDEN int http_push_reply(lua_State *L, transfer *t);
CK_HIDDEN void http_release_buffers(transfer *t, int keep);
CK_HIDDEN int http_fail_attach(lua_State *L, const char *bad);
CK_HIDDEN void http_async_open(lua_State *L);

#endif /* CONNKIT_HTTP_H */
