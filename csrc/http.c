/*
 * http.c - the transfer engine: one curl multi handle per lua_State.
 *
 * The multi owns the connection pool, DNS cache and TLS sessions, so every
 * account shares them. Easy handles are kept in a free list and reused
 * (reset only after a transfer that set more than a plain GET's options);
 * each remembers what is set on it, so a repeat request sets only what
 * differs. A blocking request is one transfer on the engine, waited on with
 * curl_multi_poll; connkit.all and req:start() are the same engine with more
 * transfers in flight, so there is one code path for all of them.
 *
 *   core.engine() -> engine              (one per lua_State, made on first use)
 *   engine:perform(spec) -> response | nil, code, message
 *   core.performer() -> perform(spec), the same bound to the engine
 *   engine:run(items, n) -> { {res = response} | {code =, message =}, ... },
 *                           number of failures
 *   engine:start(spec) -> transfer       (http_async.c)
 *   (the response of a finished transfer: http_reply.c)
 *   engine:pollfd() -> fd, engine:timeout() -> seconds | nil  (http_poll.c)
 *   engine:poll(seconds) -> number of transfers that finished
 *   engine:pending() -> number of transfers in flight
 *   core.set_response_metatable(mt), core.parse_headers(raw)
 *
 * spec: a wire spec (core.wire, http_spec.c), or a table it is made from.
 * response: { status = n, body = s, _raw_headers = s, redirect_url = s|nil,
 *             url = s, time = seconds, http_version = "2" | ... }
 *           (_raw_headers: the final reply's "Name: value" lines; res.headers
 *           is parsed from them on first use, in Lua; attempts is 1 through
 *           the metatable unless the Lua side sets it; so are size (#body)
 *           and http_version "1.1"; no body but size when a 2xx body went
 *           to a file or to on_data: http_sink.c)
 *
 * No Lua code runs inside curl callbacks: they only append to C buffers or
 * write to a file; on_data is called from the loop that drives the multi.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"

#define ENGINE_KEY "connkit.http.engine.instance"
#define BATCH_MT "connkit.http.batch"
#define KEEP_BUFFER_MAX (1024u * 1024u) /* larger buffers are not kept */

/* ------------------------------------------------------------------ */
/* Buffers and curl callbacks                                          */
/* ------------------------------------------------------------------ */

int http_buffer_add(buffer *b, const char *p, size_t n) {
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
  if (t->want != SINK_NONE) return http_sink_write(t, p, len); /* http_sink.c */
  if (t->body.n + len > t->max_body) {
    t->too_big = 1;
    return 0;
  }
  return http_buffer_add(&t->body, p, len) ? len : 0;
}

/* Reads the status code and HTTP version of a status line ("HTTP/1.1 200
 * OK", "HTTP/2 200"), which every reply's header block starts with (an
 * interim 1xx reply's and a proxy's CONNECT reply's come first, so the last
 * one is the final reply's). Read here they spare two curl_easy_getinfo
 * calls per transfer; a line that does not parse leaves line_status 0, and
 * the getinfo calls are made. */
static __attribute__((noinline)) void read_status_line(transfer *t, const char *p,
                                                      size_t len) {
  const char *v = p + 5, *end = p + len, *sp;
  long code = 0, version;
  int i;
  t->line_status = 0;
  if (end - v >= 4 && memcmp(v, "1.1 ", 4) == 0) { /* the usual one */
    sp = v + 3;
    version = CURL_HTTP_VERSION_1_1;
  } else {
    size_t vlen;
    sp = (const char *)memchr(v, ' ', (size_t)(end - v));
    if (sp == NULL) return;
    vlen = (size_t)(sp - v);
    if (vlen == 3 && memcmp(v, "1.0", 3) == 0) version = CURL_HTTP_VERSION_1_0;
    else if ((vlen == 1 && v[0] == '2') || (vlen == 3 && memcmp(v, "2.0", 3) == 0))
      version = CURL_HTTP_VERSION_2_0;
    else if (vlen == 1 && v[0] == '3') version = CURL_HTTP_VERSION_3;
    else return;
  }
  if (end - sp < 4) return;
  for (i = 1; i <= 3; i++) {
    if (sp[i] < '0' || sp[i] > '9') return;
    code = code * 10 + (sp[i] - '0');
  }
  if (sp + 4 < end && sp[4] != ' ' && sp[4] != '\r' && sp[4] != '\n') return;
  t->line_status = code;
  t->line_version = version;
}

/* Header lines arrive one per call. Only "Name: value" lines are kept: a
 * status line (an interim 1xx reply before the final one, or the final
 * one) starts the set again, and the blank line that ends it is dropped
 * but noted (a reply cut inside its headers is an error, see drain). */
static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  transfer *t = (transfer *)ud;
  size_t len = size * n;
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    t->head.n = 0;
    t->head_done = 0;
    read_status_line(t, p, len);
    return len;
  }
  if (len == 0) return len;
  if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {
    t->head_done = 1;
    return len;
  }
  return http_buffer_add(&t->head, p, len) ? len : 0;
}

/* ------------------------------------------------------------------ */
/* Engine and easy handles                                             */
/* ------------------------------------------------------------------ */

/* Makes the engine's multi handle for this process. The multi is made on
 * first use, not at require time, and made again in a forked child
 * (connkit required in nginx's init_by_lua, used in its workers): the
 * parent's multi, easy handles and pooled connections are left as they are,
 * not cleaned up, because closing a TLS connection writes to a socket the
 * parent still uses. Its transfers end as cancelled in the child. */
void http_engine_ready(lua_State *L, engine *e) {
  pid_t pid = ck_pid();
  transfer *t;
  if (e->pid == pid) return;
  if (e->closed) luaL_error(L, "attempt to use a closed connkit engine");
  while ((t = e->running) != NULL) { /* the parent's: abandoned */
    e->running = t->next;
    t->prev = t->next = NULL;
    t->easy = NULL;
    t->eng = NULL;
    t->state = T_CANCELLED;
  }
  e->nrunning = 0;
  e->nfree = 0;
  e->sync.easy = NULL;
  e->sync.eng = NULL;
  http_poll_forget(e);
  e->multi = curl_multi_init();
  if (e->multi == NULL) luaL_error(L, "curl_multi_init failed");
  curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, 64L);
  e->pid = pid;
}

engine *http_check_engine(lua_State *L, int i) {
  engine *e = (engine *)luaL_checkudata(L, i, ENGINE_MT);
  if (e->closed) luaL_error(L, "attempt to use a closed connkit engine");
  if (e->pid != ck_pid()) http_engine_ready(L, e);
  return e;
}

/* Takes an easy handle (with its state) from the free list, or a new one. */
static int take_easy(engine *e, easy_state *es) {
  if (e->nfree > 0) {
    *es = e->free_easy[--e->nfree];
    return 1;
  }
  memset(es, 0, sizeof *es);
  es->fresh = 1;
  es->easy = curl_easy_init();
  return es->easy != NULL;
}

/* Gives an easy handle back; after a request beyond a plain GET it is reset,
 * so what a plain GET leaves unset is at its default. Connections stay in
 * the multi's pool. */
static void give_easy(engine *e, easy_state *es, int dirty) {
  if (e->nfree < FREE_MAX && !e->closed) {
    if (dirty) {
      curl_easy_reset(es->easy);
      es->fresh = 1;
    }
    e->free_easy[e->nfree++] = *es;
  } else {
    curl_easy_cleanup(es->easy);
    free(es->url);
  }
  memset(es, 0, sizeof *es);
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
  if (e->pid != ck_pid()) { /* a parent's transfer in a forked child */
    t->easy = NULL;
    t->eng = NULL;
    return;
  }
  if (t->easy) {
    curl_multi_remove_handle(e->multi, t->easy);
    give_easy(e, &t->es, t->dirty);
    t->easy = NULL;
  }
  list_remove(e, t);
  t->eng = NULL;
  http_sink_release(t); /* a .part left: removed; the MIME body: freed */
}

/* curl reports a reply it cannot parse with codes that otherwise mean a bad
 * URL (a malformed status line: CURLE_UNSUPPORTED_PROTOCOL) or no memory (a
 * header line over its 100 KB limit: CURLE_OUT_OF_MEMORY, "Out of memory").
 * Once the request went out the reply is at fault: such a result becomes
 * CURLE_WEIRD_SERVER_REPLY (code "protocol") with a message that says so.
 * Read before the handle is given back (a reset clears its info). */
static void classify_reply_fault(transfer *t) {
  long sent = 0;
  if (t->result != CURLE_UNSUPPORTED_PROTOCOL &&
      t->result != CURLE_OUT_OF_MEMORY)
    return;
  if (curl_easy_getinfo(t->easy, CURLINFO_REQUEST_SIZE, &sent) != CURLE_OK ||
      sent <= 0)
    return;
  if (t->result == CURLE_OUT_OF_MEMORY)
    snprintf(t->errbuf, sizeof t->errbuf, "%s",
             "the reply cannot be read: a header line or the header block "
             "is over curl's limit (100 KB)");
  t->result = CURLE_WEIRD_SERVER_REPLY;
}

/* Marks t done and detaches it; a finished transfer object is no longer
 * anchored in the engine at ei. */
void http_finish(lua_State *L, int ei, transfer *t) {
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
}

/* The transfer of a finished easy handle. A short running list is walked:
 * that costs less than a curl_easy_getinfo (about 130 instructions), which
 * serves longer lists and a handle not found. */
static transfer *transfer_of(engine *e, CURL *easy) {
  transfer *t = NULL;
  if (e->nrunning <= 16)
    for (t = e->running; t != NULL; t = t->next)
      if (t->easy == easy) return t;
  curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
  return t;
}

/* Reads the multi's completion messages and finishes those transfers.
 * Returns how many. */
static int drain(lua_State *L, int ei, engine *e) {
  CURLMsg *m;
  int left, finished = 0;
  while ((m = curl_multi_info_read(e->multi, &left)) != NULL) {
    transfer *t;
    if (m->msg != CURLMSG_DONE) continue;
    t = transfer_of(e, m->easy_handle);
    if (t == NULL) continue;
    t->result = m->data.result;
    classify_reply_fault(t);
    if (t->result == CURLE_SSL_CERTPROBLEM && t->client != NULL)
      tls_client_explain(t->client, t->errbuf, sizeof t->errbuf); /* which field */
    if (t->result == CURLE_OK && !t->head_done) {
      /* the connection closed inside the header block: libcurl 7.88 takes
       * that for a whole reply with no body */
      snprintf(t->errbuf, sizeof t->errbuf, "%s",
               "the reply ended inside its header block");
      t->result = CURLE_PARTIAL_FILE;
    }
    if (t->result == CURLE_OK && t->line_status > 0) { /* (see read_status_line) */
      t->status = t->line_status;
      t->http_version = t->line_version;
    } else {
      curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
      t->http_version = 0;
      curl_easy_getinfo(t->easy, CURLINFO_HTTP_VERSION, &t->http_version);
    }
    if (t->result == CURLE_OK && t->status >= 300 && t->status < 400) {
      char *loc = NULL;
      curl_easy_getinfo(t->easy, CURLINFO_REDIRECT_URL, &loc);
      if (loc != NULL) t->redirect_url = strdup(loc);
    }
    {
      curl_off_t us = 0;
      curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &us);
      t->time = (double)us / 1e6;
    }
    if (t->want != SINK_NONE) http_sink_done(L, t); /* may call on_data */
    http_finish(L, ei, t);
    finished++;
    if (left == 0) break; /* the queue is empty: no call to learn it */
  }
  return finished;
}

/* Runs the multi without waiting; returns whether a transfer may have
 * finished. curl_multi_perform says how many transfers still run, and a
 * message is queued only when one finishes (drain reads the whole queue
 * each time), so with every transfer still running there is no queue to
 * read (a curl_multi_info_read less per step). */
static int run_multi(engine *e, int wait_ms) {
  int still = -1;
  if (e->poller) { /* polled by its host: http_poll.c */
    http_poll_run(e, wait_ms);
    return 1;
  }
  if (wait_ms > 0) curl_multi_poll(e->multi, NULL, 0, wait_ms, NULL);
  if (curl_multi_perform(e->multi, &still) != CURLM_OK) return 1;
  return still < 0 || still < e->nrunning;
}

/* Runs the multi once without waiting, then waits up to timeout_ms for
 * activity if nothing finished. Returns how many transfers finished. */
int http_step(lua_State *L, int ei, engine *e, int timeout_ms) {
  int maybe = run_multi(e, 0), done;
  done = http_sink_deliver(L, ei, e); /* on_data, outside curl's callbacks */
  if (maybe) done += drain(L, ei, e);
  if (done == 0 && timeout_ms > 0 && e->nrunning > 0) {
    maybe = run_multi(e, timeout_ms);
    done = http_sink_deliver(L, ei, e);
    if (maybe) done += drain(L, ei, e);
  }
  return done;
}

/* Drives the engine until t is done, in slices that watch for an interrupt
 * (interrupt.h): returns 0 then, or 1 as soon as one came (t still runs:
 * the caller cancels it, or not). */
int http_wait(lua_State *L, int ei, engine *e, transfer *t, ck_wait *w) {
  ck_wait_begin(L, w);
  while (t->state == T_RUNNING && !e->closed) {
    http_step(L, ei, e, CK_WAIT_SLICE_MS);
    if (ck_wait_interrupted(w)) return 1;
  }
  return 0;
}

/* Whether any of libcurl's proxy variables is set. Without one, handles get
 * an explicit "no proxy", which spares libcurl reading the environment on
 * every transfer; so, as in Go's net/http, the variables are read once:
 * when the engine is made (require "connkit" makes it). */
static int proxy_in_env(void) {
  static const char *const names[] = {"http_proxy", "HTTP_PROXY", "https_proxy",
                                      "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
  size_t i;
  for (i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *v = getenv(names[i]);
    if (v != NULL && v[0] != '\0') return 1;
  }
  return 0;
}

/* core.engine() -> the engine of this lua_State, created on first use (its
 * multi handle: on its first transfer in this process). */
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
  e->mt_ref = LUA_NOREF;
  http_last_string_init(L, &e->last_url);
  http_last_string_init(L, &e->last_head);
  http_last_string_init(L, &e->last_body);
  e->env_proxy = proxy_in_env();
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
  if (e->pid != ck_pid()) return 0; /* the parent's (see http_engine_ready) */
  while (e->running) {
    transfer *t = e->running;
    t->state = T_CANCELLED;
    http_detach(t);
  }
  http_release_buffers(&e->sync, 0);
  for (i = 0; i < e->nfree; i++) {
    curl_easy_cleanup(e->free_easy[i].easy);
    free(e->free_easy[i].url);
  }
  e->nfree = 0;
  http_poll_close(e);
  curl_multi_cleanup(e->multi);
  e->multi = NULL;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Request specs -> curl options                                       */
/* ------------------------------------------------------------------ */

/* Sets the options of spec s on t's easy handle, skipping those the handle
 * already has. Returns NULL or what is wrong. */
static const char *setup(const http_spec *s, transfer *t) {
  easy_state *es = &t->es;
  CURL *h = es->easy;
  if (es->fresh) {
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    if (!t->eng->env_proxy) {
      /* no proxy, and so no no_proxy list: without one set, libcurl reads
       * no_proxy and NO_PROXY from the environment on every transfer */
      curl_easy_setopt(h, CURLOPT_PROXY, "");
      curl_easy_setopt(h, CURLOPT_NOPROXY, "");
    }
    es->fresh = 0;
    es->bound = NULL;
    es->url_len = 0;
    es->url_serial = 0;
    es->headers_serial = 0;
    es->timeout_ms = es->connect_timeout_ms = 0;
    es->decompress = 0;
  }
  if (es->bound != t) {
    curl_easy_setopt(h, CURLOPT_PRIVATE, (char *)t);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, (void *)t);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, (void *)t);
    es->bound = t;
  }
  if (s->curlu != NULL) {
    /* a parsed URL: libcurl copies it instead of parsing the string again */
    if (es->url_serial != s->url_serial) {
      curl_easy_setopt(h, CURLOPT_CURLU, s->curlu);
      es->url_serial = s->url_serial;
      es->url_len = 0;
    }
  } else {
    if (es->url_serial != 0) {
      curl_easy_setopt(h, CURLOPT_CURLU, NULL);
      es->url_serial = 0;
      es->url_len = 0;
    }
    if (es->url_len != s->url_len || es->url_len == 0 ||
        memcmp(es->url, s->url, s->url_len) != 0) {
      if (curl_easy_setopt(h, CURLOPT_URL, s->url) != CURLE_OK)
        return "out of memory";
      if (es->url_cap < s->url_len) {
        char *p = (char *)realloc(es->url, s->url_len);
        if (p == NULL) {
          es->url_len = 0; /* unknown: set it next time */
          return NULL;
        }
        es->url = p;
        es->url_cap = s->url_len;
      }
      memcpy(es->url, s->url, s->url_len);
      es->url_len = s->url_len;
    }
  }
  if (es->headers_serial != s->headers_serial) {
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, s->headers); /* NULL clears it */
    es->headers_serial = s->headers_serial;
  }
  /* 0 = none; the handle's values are known, so only a change is set */
  if (es->timeout_ms != s->timeout_ms) {
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, s->timeout_ms);
    es->timeout_ms = s->timeout_ms;
  }
  if (es->connect_timeout_ms != s->connect_timeout_ms) {
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, s->connect_timeout_ms);
    es->connect_timeout_ms = s->connect_timeout_ms;
  }
  if (es->decompress != s->decompress) {
    /* "": every encoding this libcurl decodes; NULL: no header, raw body */
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, s->decompress ? "" : NULL);
    es->decompress = s->decompress;
  }
  t->max_body = s->max_body;
  http_sink_attach(s, t);
  /* a handle given back after anything but a plain GET is reset, so a GET
   * needs no method option */
  t->dirty = s->ca_file != NULL || s->client != NULL || s->kind != SPEC_GET;
  t->client = s->client;
  if (s->client != NULL) {
    const char *why = tls_client_ready(s->client);
    if (why != NULL) return why; /* "tls.<field>: ...": see http_fail_attach */
    /* libcurl keys its connection pool by the certificate file too, so a
     * connection made with one certificate never serves another (and
     * tls_client_ready made sure the key and password fit it). The
     * password is always set ("" for none): without one OpenSSL would
     * prompt on the terminal for an encrypted key. */
    curl_easy_setopt(h, CURLOPT_SSLCERT, s->client->cert_file);
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(h, CURLOPT_SSLKEY, s->client->key_file);
    curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    curl_easy_setopt(h, CURLOPT_KEYPASSWD, s->client->password ? s->client->password : "");
  }
  if (s->ca_file != NULL) {
    /* a CA file replaces the default store; dropping the default CA path
     * saves re-reading it on every new TLS connection */
    curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_file);
    curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
  }
  if (s->kind == SPEC_HEAD) {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (s->kind != SPEC_GET) {
    if (s->kind != SPEC_POST) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, s->method);
    if (s->nparts > 0) return http_sink_mime(s, t); /* CURLOPT_MIMEPOST */
    if (s->body != NULL || s->kind == SPEC_POST) {
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->body_len);
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, s->body ? s->body : "");
    }
  }
  return NULL;
}

/* Starts t (its buffers empty) for spec s: takes an easy handle, sets it
 * up, adds it to the multi. Returns NULL, or what went wrong with t
 * detached again. The spec must stay alive until t is done. */
const char *http_attach(engine *e, const http_spec *s, transfer *t) {
  const char *bad;
  CURLMcode mc;
  if (!take_easy(e, &t->es)) return "curl_easy_init failed";
  t->easy = t->es.easy;
  t->eng = t->owner = e;
  t->prev = NULL;
  t->next = e->running;
  if (e->running) e->running->prev = t;
  e->running = t;
  e->nrunning++;
  t->too_big = 0;
  t->head_done = 0;
  t->errbuf[0] = '\0';
  t->result = CURLE_OK;
  t->status = 0;
  t->line_status = 0;
  bad = setup(s, t);
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
  if (strncmp(bad, "tls.", 4) == 0) /* the client certificate (setup) */
    return ck_fail(L, "client_cert", "%s", bad);
  if (strcmp(bad, "header") == 0)
    return ck_fail(L, "header",
                   "a header value holds CR, LF or NUL; request not sent");
  if (strncmp(bad, "io: ", 4) == 0) return ck_fail(L, "io", "%s", bad + 4);
  return ck_fail(L, "internal", "%s", bad);
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
 * is enough, and its buffers serve the next request. An interrupt cancels
 * it (the easy handle goes back to the free list) and gives way to the
 * interrupt hook; transfers started with engine:start() run on. */
static int perform_on(lua_State *L, int ei, engine *e, int si,
                      const http_spec *s) {
  transfer *t = &e->sync;
  const char *bad = NULL;
  ck_wait w;
  if (s == NULL) s = http_to_spec(L, si, &bad);
  if (s == NULL) return http_fail_attach(L, bad);
  if (t->state == T_RUNNING) return luaL_error(L, "connkit: perform re-entered");
  bad = http_attach(e, s, t);
  if (bad != NULL) return http_fail_attach(L, bad);
  if (http_wait(L, ei, e, t, &w)) {
    if (t->state == T_RUNNING) {
      t->state = T_CANCELLED;
      http_detach(t);
    }
    http_release_buffers(t, 1);
    ck_wait_give_way(L, &w);
    return ck_fail(L, "cancelled", "interrupted");
  }
  return http_push_reply(L, t);
}

static int engine_perform(lua_State *L) {
  engine *e = http_check_engine(L, 1);
  return perform_on(L, 1, e, 2, NULL);
}

/* Whether the value at i is a spec (mti: the index of the spec metatable);
 * cheaper than luaL_testudata, which looks the metatable up by name. */
static int is_spec(lua_State *L, int i, int mti) {
  int yes;
  if (lua_type(L, i) != LUA_TUSERDATA || !lua_getmetatable(L, i)) return 0;
  yes = lua_rawequal(L, -1, mti);
  lua_pop(L, 1);
  return yes;
}

/* The same as a closure over this state's engine and the spec metatable,
 * for the request path: perform(spec) checks its argument against the
 * upvalue instead of looking the metatable up by name. */
static int bound_perform(lua_State *L) {
  engine *e = (engine *)lua_touserdata(L, lua_upvalueindex(1));
  const http_spec *s = NULL;
  if (e->closed) return luaL_error(L, "attempt to use a closed connkit engine");
  if (e->pid != ck_pid()) http_engine_ready(L, e);
  lua_settop(L, 1);
  if (is_spec(L, 1, lua_upvalueindex(2))) s = (const http_spec *)lua_touserdata(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  return perform_on(L, 2, e, 1, s);
}

/* core.performer() -> perform(spec): engine:perform bound to the engine. */
static int performer(lua_State *L) {
  engine_get(L);
  luaL_getmetatable(L, SPEC_MT);
  lua_pushcclosure(L, bound_perform, 2);
  return 1;
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

/* Replaces the nil, code, message on top with { code =, message = }. */
static void to_failure(lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_insert(L, -3);
  lua_setfield(L, -3, "message");
  lua_setfield(L, -2, "code");
  lua_remove(L, -2); /* the nil */
}

/* Stores the outcome of slot t into results[t->index] (at index ri) as
 * { res = response } or { code = c, message = m }; returns 1 for a
 * failure. */
static int store_outcome(lua_State *L, int ri, transfer *t) {
  int n = http_push_reply(L, t);
  if (n == 1) {
    lua_createtable(L, 0, 1);
    lua_insert(L, -2);
    lua_setfield(L, -2, "res");
  } else {
    to_failure(L);
  }
  lua_rawseti(L, ri, t->index);
  t->state = T_IDLE;
  return n != 1;
}

/* After an interrupt: every transfer of the batch still running is
 * cancelled (its easy handle goes back to the free list); the outcomes of
 * the slots are stored, and every item not started yet gets a "cancelled"
 * failure too. Returns the number of failures stored. */
static int cancel_batch(lua_State *L, int ri, batch *b, int next, int total) {
  int i, count = 0;
  for (i = 0; i < b->n; i++) {
    transfer *t = &b->slots[i];
    if (t->state == T_RUNNING) {
      t->state = T_CANCELLED;
      http_detach(t);
    }
    if (t->state == T_DONE || t->state == T_CANCELLED)
      count += store_outcome(L, ri, t);
  }
  for (; next <= total; next++) {
    ck_fail(L, "cancelled", "the request was cancelled");
    to_failure(L);
    lua_rawseti(L, ri, next);
    count++;
  }
  return count;
}

/* engine:run(items, n) -> results, failures: runs every item (a request
 * with its wire spec, a spec, or a spec table) with up to n in flight and
 * returns their outcomes in input order and how many are failures. The
 * items table keeps every spec alive while its transfer runs. An interrupt
 * cancels the batch and gives way to the interrupt hook. */
static int engine_run(lua_State *L) {
  engine *e = http_check_engine(L, 1);
  int total, n, next = 1, inflight = 0, i, ri, bi, mti, failures = 0;
  ck_wait w;
  batch *b;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = (int)luaL_optinteger(L, 3, 8);
  luaL_argcheck(L, n >= 1 && n <= 1024, 3, "concurrency must be 1-1024");
  total = (int)lua_rawlen(L, 2);
  luaL_getmetatable(L, SPEC_MT);
  mti = lua_gettop(L);
  lua_createtable(L, total, 0);
  ri = lua_gettop(L);
  b = (batch *)lua_newuserdatauv(L, sizeof(batch) + sizeof(transfer) * (size_t)(n - 1), 0);
  memset(b, 0, sizeof(batch) + sizeof(transfer) * (size_t)(n - 1));
  b->e = e;
  luaL_setmetatable(L, BATCH_MT);
  b->n = n;
  bi = lua_gettop(L);
  ck_wait_begin(L, &w);
  while (next <= total || inflight > 0) {
    for (i = 0; i < n && next <= total; i++) {
      transfer *t = &b->slots[i];
      const char *bad;
      const http_spec *s;
      if (t->state != T_IDLE) continue;
      lua_rawgeti(L, 2, next);
      s = NULL;
      bad = NULL;
      if (lua_istable(L, -1)) { /* a request: its wire spec, if it has one */
        lua_pushliteral(L, "_wire");
        lua_rawget(L, -2);
        if (is_spec(L, -1, mti)) s = (const http_spec *)lua_touserdata(L, -1);
        else lua_pop(L, 1);
      } else if (is_spec(L, -1, mti)) {
        s = (const http_spec *)lua_touserdata(L, -1);
      } else {
        return luaL_error(L, "run: item %d is not a request", next);
      }
      if (s == NULL) { /* a spec table: the spec made from it is kept in its
                        * result slot until the outcome replaces it */
        s = http_to_spec(L, -1, &bad);
        if (s != NULL) {
          lua_pushvalue(L, -1);
          lua_rawseti(L, ri, next);
        }
      }
      t->index = next++;
      if (s != NULL) bad = http_attach(e, s, t);
      lua_settop(L, bi);
      if (bad == NULL) {
        inflight++;
      } else {
        http_fail_attach(L, bad);
        failures++;
        to_failure(L);
        lua_rawseti(L, ri, t->index);
      }
    }
    if (inflight == 0) continue;
    http_step(L, 1, e, CK_WAIT_SLICE_MS);
    if (ck_wait_interrupted(&w)) {
      failures += cancel_batch(L, ri, b, next, total);
      ck_wait_give_way(L, &w);
      break;
    }
    for (i = 0; i < n; i++) {
      transfer *t = &b->slots[i];
      if (t->state == T_DONE || t->state == T_CANCELLED) {
        failures += store_outcome(L, ri, t);
        inflight--;
      }
    }
  }
  lua_pushvalue(L, ri);
  lua_pushinteger(L, failures);
  return 2;
}

static int engine_poll(lua_State *L) {
  engine *e = http_check_engine(L, 1);
  lua_Number s = luaL_optnumber(L, 2, 0);
  int ms = (int)ck_seconds_to_ms((double)s); /* 0.0004 s waits 1 ms, not 0 */
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
  static const luaL_Reg batch_meta[] = {{"__gc", batch_gc}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
      {"engine", engine_get},
      {"performer", performer},
      {"set_response_metatable", set_response_metatable},
      {"parse_headers", http_parse_headers},
      {NULL, NULL}};
  compat_newclass(L, ENGINE_MT, engine_methods, engine_meta);
  compat_newclass(L, BATCH_MT, NULL, batch_meta);
  luaL_setfuncs(L, funcs, 0);
  http_spec_open(L);
  http_async_open(L);
  http_poll_open(L);
}
