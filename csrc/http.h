/*
 * http.h - what http.c (the engine, transfers, replies) and http_async.c
 * (transfer objects for start/poll) share.
 */
#ifndef CONNKIT_HTTP_H
#define CONNKIT_HTTP_H

#include <stdint.h>
#include <sys/types.h>

#include <curl/curl.h>

#include "connkit.h"
#include "interrupt.h"
#include "tls_client.h"

#define ENGINE_MT "connkit.http.engine"
#define TRANSFER_MT "connkit.http.transfer"
#define SPEC_MT "connkit.http.spec"
#define FREE_MAX 32

typedef struct {
  char *p;
  size_t n, cap;
} buffer;

struct engine;
struct transfer;
/* the epoll set of an engine that is polled by its host (http_poll.c) */
typedef struct http_poller http_poller;

enum spec_kind { SPEC_GET, SPEC_HEAD, SPEC_POST, SPEC_OTHER };

/* Where a 2xx reply's body goes (http_sink.c): memory (res.body), a file
 * (output) or a Lua function (on_data). */
enum sink_want { SINK_NONE, SINK_FILE, SINK_FUNC };
enum sink_route { ROUTE_UNDECIDED, ROUTE_MEMORY, ROUTE_FILE, ROUTE_FUNC };
enum sink_fail { SINK_OK, SINK_IO_OPEN, SINK_IO_WRITE, SINK_IO_RENAME, SINK_ABORT };

/* One part of a multipart body; the strings belong to the spec. */
typedef struct http_part {
  const char *name, *value, *file, *filename, *type; /* value or file */
  size_t value_len;
} http_part;

/* A request as curl needs it (http_spec.c). Immutable once made; the
 * strings and the header list live as long as the spec. */
typedef struct http_spec {
  const char *url, *method, *body, *ca_file; /* body, ca_file: NULL if none */
  size_t url_len, body_len, max_body;
  long timeout_ms, connect_timeout_ms; /* 0: none */
  struct curl_slist *headers;
  uint64_t headers_serial; /* 0: no header list */
  CURLU *curlu;            /* the URL parsed once, or NULL: send url */
  uint64_t url_serial;     /* of curlu; 0 without one */
  enum spec_kind kind;     /* SPEC_GET: a GET without a body */
  int decompress;          /* send Accept-Encoding, decode the reply */
  enum sink_want want;     /* where a 2xx body goes */
  const char *output, *output_part; /* SINK_FILE: the path, and path .. ".part" */
  int data_ref;            /* SINK_FUNC: registry ref of on_data */
  const http_part *parts;  /* multipart body (nparts > 0), or NULL */
  int nparts;
  const char *shown_url;   /* res.url: the URL with secrets masked, or url */
  size_t shown_url_len;
  tls_client *client;      /* the client certificate (mTLS), or NULL */
} http_spec;

/* An easy handle and what is set on it, so a handle that ran the same kind
 * of request before needs only the options that differ. */
typedef struct {
  CURL *easy;
  struct transfer *bound; /* the transfer its data pointers point to */
  char *url;              /* a copy of the URL string set, url_len bytes */
  size_t url_len, url_cap;
  uint64_t url_serial;    /* the parsed URL set instead (CURLOPT_CURLU) */
  uint64_t headers_serial;
  long timeout_ms, connect_timeout_ms;
  int decompress;
  int fresh; /* no options set (new, or reset after a non-plain request) */
} easy_state;

enum tstate { T_IDLE, T_RUNNING, T_DONE, T_CANCELLED, T_CLOSED };

/* One request on the engine. Blocking requests use the engine's own
 * transfer, connkit.all a block of them, req:start() a userdata each. */
typedef struct transfer {
  struct engine *eng;   /* set while the easy handle is in the multi */
  struct engine *owner; /* the engine it last ran on (for its registry refs) */
  CURL *easy;
  easy_state es; /* the handle's state while the transfer holds it */
  buffer body, head;
  size_t max_body;
  int too_big;
  int head_done; /* the blank line that ends the reply's header block came */
  int dirty;    /* set options beyond a plain GET's: reset the handle after */
  int anchored; /* a userdata kept alive by the engine while it runs */
  int index;    /* connkit.all: position in the input */
  enum tstate state;
  CURLcode result;
  long status;
  char *redirect_url;
  /* where the body goes (http_sink.c); set up by http_sink_attach */
  enum sink_want want;
  enum sink_route route;
  enum sink_fail fail;
  int fd, has_fd;     /* the .part file while it is written */
  int sink_errno;
  int paused;         /* on_data: curl holds data until the buffer is handed over */
  int delivering;     /* on_data runs for this transfer now */
  const char *output, *output_part;
  int data_ref;
  size_t size;        /* body bytes received (decoded) */
  curl_mime *mime;
  const char *url;    /* res.url (the spec's, alive as long as it) */
  size_t url_len;
  double time;        /* seconds, the whole transfer */
  long http_version;  /* CURLINFO_HTTP_VERSION */
  /* from the last status line curl handed to on_header (0: none, or one
   * that did not parse): the final reply's, once the transfer succeeded */
  long line_status, line_version;
  const tls_client *client; /* the spec's client certificate, or NULL */
  struct transfer *prev, *next; /* the engine's running list */
  char errbuf[CURL_ERROR_SIZE];
} transfer;

/* A string the engine pushed last, kept in the registry so that the same
 * bytes again push it again (see push_reused in http_reply.c). */
typedef struct {
  int ref;       /* registry ref, LUA_NOREF until the engine is made */
  const char *p; /* its bytes (alive while it is referenced) */
  size_t len;
} last_string;

typedef struct engine {
  CURLM *multi;
  easy_state free_easy[FREE_MAX]; /* idle handles, most recent last */
  int nfree;
  transfer *running;
  int nrunning;
  int closed;
  int mt_ref;    /* registry ref: the reply metatable */
  last_string last_url;  /* the last res.url string (see push_reused) */
  last_string last_head; /* the last res._raw_headers */
  last_string last_body; /* the last res.body (up to REUSE_BODY_MAX bytes) */
  int env_proxy; /* a proxy variable was set when the engine was made */
  pid_t pid;     /* the process the multi belongs to (0: not made yet) */
  transfer sync; /* the transfer of blocking requests, buffers kept */
  http_poller *poller; /* NULL until pollfd(): see http_poll.c */
} engine;

/* user value of the engine: the table anchoring running transfer objects */
#define UV_RUNNING 1

CK_HIDDEN engine *http_check_engine(lua_State *L, int i);
CK_HIDDEN void http_engine_ready(lua_State *L, engine *e);
CK_HIDDEN const char *http_attach(engine *e, const http_spec *s,
                                  transfer *t);
CK_HIDDEN const char *http_push_spec(lua_State *L, int t);
CK_HIDDEN http_spec *http_to_spec(lua_State *L, int i, const char **bad);
CK_HIDDEN void http_spec_open(lua_State *L);
CK_HIDDEN void http_detach(transfer *t);
CK_HIDDEN int http_step(lua_State *L, int ei, engine *e, int timeout_ms);
CK_HIDDEN int http_wait(lua_State *L, int ei, engine *e, transfer *t,
                        ck_wait *w);
CK_HIDDEN int http_push_reply(lua_State *L, transfer *t);
CK_HIDDEN int http_parse_headers(lua_State *L);
CK_HIDDEN void http_last_string_init(lua_State *L, last_string *ls);
CK_HIDDEN void http_release_buffers(transfer *t, int keep);
CK_HIDDEN int http_fail_attach(lua_State *L, const char *bad);
CK_HIDDEN void http_async_open(lua_State *L);
CK_HIDDEN void http_poll_run(engine *e, int wait_ms);
CK_HIDDEN void http_poll_close(engine *e);
CK_HIDDEN void http_poll_forget(engine *e);
CK_HIDDEN void http_poll_open(lua_State *L);
CK_HIDDEN int http_buffer_add(buffer *b, const char *p, size_t n);
CK_HIDDEN void http_finish(lua_State *L, int ei, transfer *t);
CK_HIDDEN void http_sink_attach(const http_spec *s, transfer *t);
CK_HIDDEN const char *http_sink_mime(const http_spec *s, transfer *t);
CK_HIDDEN size_t http_sink_write(transfer *t, const char *p, size_t len);
CK_HIDDEN int http_sink_deliver(lua_State *L, int ei, engine *e);
CK_HIDDEN void http_sink_done(lua_State *L, transfer *t);
CK_HIDDEN void http_sink_release(transfer *t);
CK_HIDDEN int http_sink_push_fail(lua_State *L, transfer *t);

#endif /* CONNKIT_HTTP_H */
