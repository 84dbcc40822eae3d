/*
 * http_sink.c - where a reply body goes besides memory, and multipart
 * bodies: the request options output, on_data and multipart.
 *
 * output: a 2xx body is written to output_part (path .. ".part") as it
 * arrives and renamed over path (after fsync) once the transfer completed.
 * A reply of any other status keeps its body in memory (res.body, bounded by
 * max_body): an error page never reaches the file. A failed or cancelled
 * transfer removes the .part and leaves path as it was; every attempt (a
 * retry, a redirect hop) starts the file anew.
 *
 * on_data: a 2xx body is handed to a Lua function in pieces. The function
 * is never called from inside libcurl: the write callback appends to the
 * transfer's buffer, up to STREAM_HIGH bytes, and pauses the transfer when
 * it is full (curl then holds what it read and stops reading); the loop
 * that drives the multi (http_step) calls the function with what is
 * buffered, under lua_pcall, and resumes the transfer. So memory stays
 * bounded and a Lua error or a yield never crosses curl's frames. A
 * function that returns false or raises ends the transfer: code "aborted".
 *
 * multipart: a curl_mime built per transfer (files are read by libcurl as
 * the body is sent) and freed when the transfer is detached.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "http.h"

#define STREAM_HIGH (256u * 1024u) /* on_data: bytes buffered before a pause */

/* Sets t up for spec s: where its body goes, its URL for res.url. */
void http_sink_attach(const http_spec *s, transfer *t) {
  t->want = s->want;
  t->route = ROUTE_UNDECIDED;
  t->fail = SINK_OK;
  t->sink_errno = 0;
  t->paused = t->delivering = 0;
  t->has_fd = 0;
  t->output = s->output;
  t->output_part = s->output_part;
  t->data_ref = s->data_ref;
  t->size = 0;
  t->mime = NULL;
  t->url = s->shown_url ? s->shown_url : s->url;
  t->url_len = s->shown_url ? s->shown_url_len : s->url_len;
  t->time = 0;
  t->http_version = 0;
}

/* Builds the multipart body of s on t's easy handle. Returns NULL or what
 * went wrong ("io: ..." for a file libcurl cannot read). */
const char *http_sink_mime(const http_spec *s, transfer *t) {
  int i;
  curl_mime *m = curl_mime_init(t->easy);
  if (m == NULL) return "out of memory";
  t->mime = m;
  for (i = 0; i < s->nparts; i++) {
    const http_part *p = &s->parts[i];
    curl_mimepart *mp = curl_mime_addpart(m);
    CURLcode rc;
    if (mp == NULL) return "out of memory";
    if (curl_mime_name(mp, p->name) != CURLE_OK) return "out of memory";
    if (p->file != NULL) {
      rc = curl_mime_filedata(mp, p->file);
      if (rc == CURLE_READ_ERROR) return "io: a multipart file cannot be read";
      if (rc != CURLE_OK) return "out of memory";
    } else if (curl_mime_data(mp, p->value, p->value_len) != CURLE_OK) {
      return "out of memory";
    }
    if (p->filename != NULL && curl_mime_filename(mp, p->filename) != CURLE_OK)
      return "out of memory";
    if (p->type != NULL && curl_mime_type(mp, p->type) != CURLE_OK) return "out of memory";
  }
  curl_easy_setopt(t->easy, CURLOPT_MIMEPOST, m);
  return NULL;
}

/* Opens t's .part file (created or emptied). Returns 0 on failure. */
static int open_part(transfer *t) {
  t->fd = open(t->output_part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (t->fd < 0) {
    t->fail = SINK_IO_OPEN;
    t->sink_errno = errno;
    return 0;
  }
  t->has_fd = 1;
  return 1;
}

/* The route of t's body, from the status of the reply it belongs to: a 2xx
 * body goes where the spec wants it, any other to memory. */
static int decide(transfer *t) {
  long status = 0;
  if (t->easy) curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status > 299) {
    t->route = ROUTE_MEMORY;
    return 1;
  }
  if (t->want == SINK_FILE) {
    t->route = ROUTE_FILE;
    return open_part(t);
  }
  t->route = ROUTE_FUNC;
  return 1;
}

static int write_all(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0) {
      if (errno == EINTR) continue;
      return 0;
    }
    p += w;
    len -= (size_t)w;
  }
  return 1;
}

/* The write callback of a transfer with a sink: no Lua runs here. */
size_t http_sink_write(transfer *t, const char *p, size_t len) {
  if (t->route == ROUTE_UNDECIDED && !decide(t)) return 0;
  if (t->fail != SINK_OK) return 0; /* aborted by on_data meanwhile */
  if (t->size + len > t->max_body) {
    t->too_big = 1;
    return 0;
  }
  switch (t->route) {
  case ROUTE_FILE:
    if (!write_all(t->fd, p, len)) {
      t->fail = SINK_IO_WRITE;
      t->sink_errno = errno;
      return 0;
    }
    break;
  case ROUTE_FUNC:
    if (t->body.n > 0 && t->body.n + len > STREAM_HIGH) {
      t->paused = 1; /* curl keeps these bytes and offers them again */
      return CURL_WRITEFUNC_PAUSE;
    }
    if (!http_buffer_add(&t->body, p, len)) return 0;
    break;
  default:
    if (!http_buffer_add(&t->body, p, len)) return 0;
  }
  t->size += len;
  return len;
}

/* Hands what t buffered to on_data, under lua_pcall. Returns 0 when the
 * function stopped the transfer (t->fail and the message in errbuf). */
static int flush(lua_State *L, transfer *t) {
  while (t->body.n > 0) {
    int rc;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->data_ref);
    lua_pushlstring(L, t->body.p, t->body.n);
    t->body.n = 0;
    t->delivering = 1;
    rc = lua_pcall(L, 1, 1, 0);
    t->delivering = 0;
    if (rc != LUA_OK) {
      const char *msg = lua_tostring(L, -1);
      snprintf(t->errbuf, sizeof t->errbuf, "on_data raised an error: %s",
               msg ? msg : "(an error object that is not a string)");
      lua_pop(L, 1);
      t->fail = SINK_ABORT;
      return 0;
    }
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
      snprintf(t->errbuf, sizeof t->errbuf, "%s",
               "on_data returned false: the transfer was stopped");
      lua_pop(L, 1);
      t->fail = SINK_ABORT;
      return 0;
    }
    lua_pop(L, 1);
  }
  return 1;
}

/* Calls on_data for every running transfer of e with buffered bytes and
 * resumes the paused ones; a transfer whose function stopped it is
 * finished. The function may run connkit's own code, which may change the
 * running list: the scan starts again after each call. Returns how many
 * transfers finished. */
int http_sink_deliver(lua_State *L, int ei, engine *e) {
  transfer *t;
  int finished = 0;
again:
  for (t = e->running; t != NULL; t = t->next) {
    if (t->route != ROUTE_FUNC || t->delivering || (t->body.n == 0 && !t->paused))
      continue;
    if (!flush(L, t)) {
      if (t->state == T_RUNNING && t->eng != NULL) {
        t->result = CURLE_WRITE_ERROR;
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
        http_finish(L, ei, t);
        finished++;
      }
    } else if (t->paused && t->state == T_RUNNING && t->easy != NULL) {
      t->paused = 0;
      curl_easy_pause(t->easy, CURLPAUSE_CONT); /* may refill the buffer */
    }
    goto again;
  }
  return finished;
}

/* The end of a transfer with a sink (curl's result known, t still
 * attached): the last bytes to on_data, the .part renamed over the
 * output. Any failure sets t->result. */
void http_sink_done(lua_State *L, transfer *t) {
  if (t->result != CURLE_OK) return; /* http_sink_release cleans up */
  if (t->route == ROUTE_UNDECIDED && t->status >= 200 && t->status <= 299) {
    /* a 2xx with an empty body: an empty file, on_data never called */
    t->route = t->want == SINK_FILE ? ROUTE_FILE : ROUTE_FUNC;
    if (t->route == ROUTE_FILE && !open_part(t)) {
      t->result = CURLE_WRITE_ERROR;
      return;
    }
  }
  if (t->route == ROUTE_FUNC && !flush(L, t)) {
    t->result = CURLE_WRITE_ERROR;
    return;
  }
  if (t->route == ROUTE_FILE && t->has_fd) {
    int ok = fsync(t->fd) == 0, err = errno;
    t->has_fd = 0;
    if (close(t->fd) != 0 && ok) ok = 0, err = errno;
    if (ok && rename(t->output_part, t->output) != 0) ok = 0, err = errno;
    if (!ok) {
      t->fail = SINK_IO_RENAME;
      t->sink_errno = err;
      t->result = CURLE_WRITE_ERROR;
      unlink(t->output_part);
    }
  }
}

/* What a transfer leaves behind: an open .part (the transfer failed or was
 * cancelled) is removed, the MIME body freed. */
void http_sink_release(transfer *t) {
  if (t->has_fd) {
    close(t->fd);
    unlink(t->output_part);
    t->has_fd = 0;
  }
  if (t->mime != NULL) {
    curl_mime_free(t->mime);
    t->mime = NULL;
  }
}

/* Pushes nil, code, message for a transfer stopped by its sink. */
int http_sink_push_fail(lua_State *L, transfer *t) {
  static const char *const what[] = {"", "cannot create", "cannot write",
                                     "cannot finish"};
  if (t->fail == SINK_ABORT) return ck_fail(L, "aborted", "%s", t->errbuf);
  return ck_fail(L, "io", "%s %s: %s", what[t->fail],
                 t->fail == SINK_IO_RENAME ? t->output : t->output_part,
                 strerror(t->sink_errno));
}
