/*
 * sftp_parallel.c - one file moved over several SFTP sessions at once
 * (get/put with `parallel = n`, lua/connkit/sftp/parallel.lua).
 *
 * libssh2 1.10 encrypts and decrypts in the calling thread, one 16-byte
 * block per cipher call, so one stream is bound by one core long before
 * loopback or a LAN is. Each part of the file (a byte range) runs in a
 * thread of its own on a session of its own (a libssh2 session is used by
 * one thread at a time; sessions share nothing), reading or writing the
 * local file at its offsets (pread/pwrite). The Lua thread only waits: it
 * reports progress (the sum of the parts, so it only grows), watches for an
 * interrupt, and never lets a part thread touch the Lua state.
 *
 * Stopping: a failure in one part, a progress callback that fails or
 * returns false, stop the others after their current libssh2 call; an
 * interrupt shuts their sockets down (the sessions are broken then). The
 * target (the .part file) is then cut back to the bytes in place without a
 * gap from its start, so that resume can trust its size again.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "interrupt.h"
#include "sftp.h"

#define MAX_PARTS 16
#define MIN_ASK (32 * 1024) /* smallest read asked near a part's end */

enum { PART_OK = 0, PART_SSH, PART_LOCAL, PART_SHORT };

typedef struct job job;

typedef struct {
  job *j;
  ck_handle *fh;           /* the remote file, on a session of its own */
  int64_t start, stop;     /* the byte range [start, stop) */
  int64_t done;            /* bytes moved (atomic) */
  int err;                 /* PART_* */
  int err_no;              /* errno of a PART_LOCAL failure */
  char *buf;
  pthread_t tid;
  int started;
} part;

struct job {
  int get, fd, n;
  size_t chunk;
  int stop;    /* atomic: set to end every part after its current call */
  int running; /* parts still running, under mu */
  pthread_mutex_t mu;
  pthread_cond_t cv; /* signalled after each step of a part and at its end */
  part parts[MAX_PARTS];
};

static int stopped(job *j) { return __atomic_load_n(&j->stop, __ATOMIC_ACQUIRE); }

static void stepped(part *p, ssize_t n) {
  __atomic_add_fetch(&p->done, (int64_t)n, __ATOMIC_RELEASE);
  pthread_mutex_lock(&p->j->mu);
  pthread_cond_signal(&p->j->cv);
  pthread_mutex_unlock(&p->j->mu);
}

/* A part of a get: remote [start, stop) into the local file. Near the
 * range's end the reads ask for less, so libssh2's read-ahead (four times
 * the size asked) does not run far into the next part's range. */
static void part_get(part *p) {
  int64_t pos = p->start;
  libssh2_sftp_seek64(p->fh->h, (libssh2_uint64_t)pos);
  while (pos < p->stop && !stopped(p->j)) {
    int64_t rem = p->stop - pos;
    size_t ask = p->j->chunk;
    ssize_t n, w;
    if ((int64_t)ask > rem / 4) ask = (size_t)(rem / 4 > MIN_ASK ? rem / 4 : MIN_ASK);
    if ((int64_t)ask > rem) ask = (size_t)rem;
    n = libssh2_sftp_read(p->fh->h, p->buf, ask);
    if (n < 0) {
      p->err = PART_SSH;
      return;
    }
    if (n == 0) { /* the remote file ended early: it shrank */
      p->err = PART_SHORT;
      return;
    }
    for (w = 0; w < n;) {
      ssize_t k = pwrite(p->j->fd, p->buf + w, (size_t)(n - w), (off_t)(pos + w));
      if (k < 0 && errno == EINTR) continue;
      if (k < 0) {
        p->err = PART_LOCAL;
        p->err_no = errno;
        return;
      }
      w += k;
    }
    pos += n;
    stepped(p, n);
  }
}

/* A part of a put: local [start, stop) into the remote file. As pump_put
 * (sftp_fs.c): a buffer of two chunks topped up whenever less than one is
 * unacknowledged, so libssh2 always has data in flight. */
static void part_put(part *p) {
  size_t chunk = p->j->chunk, cap = 2 * chunk, start = 0, end = 0;
  int64_t next = p->start; /* the next local offset to read */
  libssh2_sftp_seek64(p->fh->h, (libssh2_uint64_t)p->start);
  while (!stopped(p->j)) {
    ssize_t n;
    if (next < p->stop && end - start < chunk) {
      if (start > 0) {
        memmove(p->buf, p->buf + start, end - start);
        end -= start;
        start = 0;
      }
      while (end < cap && next < p->stop) {
        size_t want = cap - end;
        ssize_t k;
        if ((int64_t)want > p->stop - next) want = (size_t)(p->stop - next);
        k = pread(p->j->fd, p->buf + end, want, (off_t)next);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
          p->err = PART_LOCAL;
          p->err_no = errno;
          return;
        }
        if (k == 0) { /* the local file shrank */
          p->err = PART_SHORT;
          return;
        }
        end += (size_t)k;
        next += k;
      }
    }
    if (end == start) return;
    n = libssh2_sftp_write(p->fh->h, p->buf + start, end - start);
    if (n < 0) {
      p->err = PART_SSH;
      return;
    }
    start += (size_t)n;
    stepped(p, n);
  }
}

static void *part_main(void *arg) {
  part *p = (part *)arg;
  job *j = p->j;
  if (j->get) part_get(p);
  else part_put(p);
  if (p->err != PART_OK) __atomic_store_n(&j->stop, 1, __ATOMIC_RELEASE);
  pthread_mutex_lock(&j->mu);
  j->running--;
  pthread_cond_signal(&j->cv);
  pthread_mutex_unlock(&j->mu);
  return NULL;
}

static int64_t total_done(job *j) {
  int64_t sum = 0;
  int i;
  for (i = 0; i < j->n; i++) sum += __atomic_load_n(&j->parts[i].done, __ATOMIC_ACQUIRE);
  return sum;
}

/* Bytes done from the first part's start without a gap. */
static int64_t prefix_done(job *j) {
  int64_t sum = 0;
  int i;
  for (i = 0; i < j->n; i++) {
    part *p = &j->parts[i];
    sum += p->done;
    if (p->done < p->stop - p->start) break;
  }
  return sum;
}

/* Waits until every part ended or `ms` passed; returns the number running. */
static int wait_parts(job *j, long ms) {
  struct timespec ts;
  int running;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&j->mu);
  if (j->running > 0) pthread_cond_timedwait(&j->cv, &j->mu, &ts);
  running = j->running;
  pthread_mutex_unlock(&j->mu);
  return running;
}

static void free_job(job *j) {
  int i;
  for (i = 0; i < j->n; i++) free(j->parts[i].buf);
  if (j->fd >= 0) close(j->fd);
  pthread_mutex_destroy(&j->mu);
  pthread_cond_destroy(&j->cv);
  free(j);
}

/* Pushes the failure of the first part that failed (in part order). */
static int part_failure(lua_State *L, job *j, const char *lpath) {
  int i;
  for (i = 0; i < j->n; i++) {
    part *p = &j->parts[i];
    switch (p->err) {
      case PART_SSH:
        return sftp_fail(L, p->fh->s, j->get ? "read" : "write", NULL);
      case PART_LOCAL:
        return ck_fail(L, "local_io", "%s %s: %s", j->get ? "write" : "read", lpath,
                       strerror(p->err_no));
      case PART_SHORT:
        return ck_fail(L, "failure", "%s: the %s file ended before its size at the start",
                       j->get ? "read" : "write", j->get ? "remote" : "local");
      default:
        break;
    }
  }
  return ck_fail(L, "failure", "a part of the transfer ended early");
}

/* Cuts the target back to the `size` bytes known to be in place without a
 * gap: the local file of a get, the remote one of a put (through the first
 * part's session, when it still works). True when done. */
static int cut_back(job *j, int64_t size) {
  if (j->get) return j->fd >= 0 && ftruncate(j->fd, (off_t)size) == 0;
  {
    part *p = &j->parts[0];
    LIBSSH2_SFTP_ATTRIBUTES a;
    if (p->fh->s->broken || p->fh->h == NULL) return 0;
    memset(&a, 0, sizeof a);
    a.flags = LIBSSH2_SFTP_ATTR_SIZE;
    a.filesize = (libssh2_uint64_t)size;
    return libssh2_sftp_fsetstat(p->fh->h, &a) == 0;
  }
}

/* core.sftp_pump_parallel(direction, localpath, parts, chunk, offset, total,
 * progress) -> bytes done (offset + the range) | nil, code, message, prefix
 * | nil, "callback", raised value, prefix.
 * parts: a list of { file, start, stop } (at most 16), each file open on a
 * session of its own, the ranges back to back from `offset` to `total`.
 * "get" writes into localpath (which must exist: the caller made it hold
 * the first `offset` bytes), "put" reads from it. On failure the target is
 * cut back to the bytes in place without a gap from its start, `prefix`
 * (nil when it could not be: its size is then no guide to resume).
 * progress(done, total) runs in this thread, about once per chunk moved. */
static int pump_parallel(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  const char *lpath = luaL_checkstring(L, 2);
  lua_Integer chunk = luaL_checkinteger(L, 4);
  lua_Integer offset = luaL_checkinteger(L, 5);
  lua_Integer total = luaL_checkinteger(L, 6);
  int get = strcmp(dir, "get") == 0, n, i, r = 0, interrupted = 0;
  lua_Integer reported = -1;
  ck_wait w;
  job *j;
  luaL_argcheck(L, get || strcmp(dir, "put") == 0, 1, "\"get\" or \"put\" expected");
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_argcheck(L, chunk >= 4096 && chunk <= (64 << 20) / 2, 4, "bad chunk size");
  luaL_argcheck(L, offset >= 0 && offset <= total, 5, "bad offset");
  n = (int)lua_rawlen(L, 3);
  luaL_argcheck(L, n >= 1 && n <= MAX_PARTS, 3, "1 to 16 parts expected");
  j = (job *)calloc(1, sizeof *j);
  if (j == NULL) return luaL_error(L, "out of memory");
  j->get = get;
  j->fd = -1;
  j->n = n;
  j->chunk = (size_t)chunk;
  pthread_mutex_init(&j->mu, NULL);
  pthread_cond_init(&j->cv, NULL);
  for (i = 0; i < n; i++) { /* check everything before anything starts */
    part *p = &j->parts[i];
    ck_handle *fh;
    lua_rawgeti(L, 3, i + 1);
    if (!lua_istable(L, -1)) {
      free_job(j);
      return luaL_argerror(L, 3, "each part must be a table");
    }
    lua_rawgeti(L, -1, 1);
    fh = (ck_handle *)luaL_testudata(L, -1, CK_SFTP_FILE);
    lua_rawgeti(L, -2, 2);
    lua_rawgeti(L, -3, 3);
    p->j = j;
    p->fh = fh;
    p->start = (int64_t)lua_tointeger(L, -2);
    p->stop = (int64_t)lua_tointeger(L, -1);
    lua_pop(L, 4);
    if (fh == NULL || fh->h == NULL || fh->s == NULL || fh->s->ssh == NULL ||
        p->start != (i == 0 ? offset : j->parts[i - 1].stop) || p->stop < p->start ||
        (i == n - 1 && p->stop != total)) {
      free_job(j);
      return luaL_argerror(L, 3, "parts must be open files with back-to-back ranges");
    }
    { /* one part per session: a session is never used by two threads */
      int k;
      for (k = 0; k < i; k++)
        if (j->parts[k].fh->s == fh->s) {
          free_job(j);
          return luaL_argerror(L, 3, "each part needs a session of its own");
        }
    }
    p->buf = (char *)malloc((size_t)chunk * (get ? 1 : 2));
    if (p->buf == NULL) {
      free_job(j);
      return luaL_error(L, "out of memory");
    }
  }
  j->fd = get ? open(lpath, O_WRONLY | O_CLOEXEC) : open(lpath, O_RDONLY | O_CLOEXEC);
  if (j->fd < 0) {
    r = ck_fail(L, "local_io", "open %s: %s", lpath, strerror(errno));
    free_job(j);
    return r;
  }
  for (i = 0; i < n; i++) { /* the threads wait as libssh2 does: blocking */
    libssh2_session_set_timeout(j->parts[i].fh->s->ssh, j->parts[i].fh->s->timeout_ms);
    j->parts[i].fh->s->busy = 1; /* the progress callback must not use it */
  }
  ck_wait_begin(L, &w);
  for (i = 0; i < n; i++) {
    part *p = &j->parts[i];
    pthread_mutex_lock(&j->mu);
    j->running++;
    pthread_mutex_unlock(&j->mu);
    if (pthread_create(&p->tid, NULL, part_main, p) != 0) {
      pthread_mutex_lock(&j->mu);
      j->running--;
      pthread_mutex_unlock(&j->mu);
      __atomic_store_n(&j->stop, 1, __ATOMIC_RELEASE);
      break;
    }
    p->started = 1;
  }
  for (;;) {
    int running = wait_parts(j, CK_WAIT_SLICE_MS);
    lua_Integer done = offset + (lua_Integer)total_done(j);
    if (ck_wait_interrupted(&w)) { /* the part threads may be deep in a wait */
      interrupted = 1;
      __atomic_store_n(&j->stop, 1, __ATOMIC_RELEASE);
      for (i = 0; i < n; i++) {
        j->parts[i].fh->s->broken = 1;
        shutdown(j->parts[i].fh->s->sock, SHUT_RDWR);
      }
      break;
    }
    if (r == 0 && !stopped(j) &&
        (done - (reported < 0 ? offset : reported) >= chunk || (running == 0 && done != reported))) {
      reported = done;
      r = sftp_report_progress(L, 7, done, total);
      if (r != 0) __atomic_store_n(&j->stop, 1, __ATOMIC_RELEASE);
    }
    if (running == 0) break;
  }
  for (i = 0; i < n; i++)
    if (j->parts[i].started) pthread_join(j->parts[i].tid, NULL);
  for (i = 0; i < n; i++) {
    j->parts[i].fh->s->busy = 0;
    sftp_close_deferred(j->parts[i].fh->s);
  }
  if (interrupted) {
    free_job(j);
    ck_wait_give_way(L, &w);
    return ck_fail(L, "cancelled", "interrupted");
  }
  if (r == 0 && offset + total_done(j) == total) {
    int closed = close(j->fd) == 0, err = errno;
    j->fd = -1;
    if (get && !closed) {
      r = ck_fail(L, "local_io", "close %s: %s", lpath, strerror(err));
      free_job(j);
      lua_pushnil(L); /* its size is no guide: the marker stays */
      return r + 1;
    }
    if (reported != total) { /* the last step ended the loop before a report */
      r = sftp_report_progress(L, 7, total, total);
      if (r != 0) {
        free_job(j);
        lua_pushinteger(L, total);
        return r + 1;
      }
    }
    free_job(j);
    lua_pushinteger(L, total);
    return 1;
  }
  if (r == 0) r = part_failure(L, j, lpath);
  if (cut_back(j, offset + prefix_done(j))) lua_pushinteger(L, offset + prefix_done(j));
  else lua_pushnil(L);
  free_job(j);
  return r + 1;
}

void sftp_parallel_open(lua_State *L) {
  lua_pushcfunction(L, pump_parallel);
  lua_setfield(L, -2, "sftp_pump_parallel");
}
