/*
 * sftp_fs.c - SFTP operations on a logged-in session (stat, mkdir, rmdir,
 * remove, rename, realpath), remote files (read, write, seek, tell, fstat,
 * fsync) and directory listings.
 *
 * A file or directory userdata keeps its session alive through user value 1
 * and is linked into the session's handle list, so closing the session
 * closes it first. Reads and writes move large blocks through libssh2,
 * which pipelines them as many SFTP requests in flight: that is what makes
 * a transfer as fast as OpenSSH's. Io-like behaviour (read formats, lines,
 * seek whence) is the Lua side's job.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "interrupt.h"
#include "sftp.h"

#define MAX_READ (64u << 20)
#define IO_INTERRUPTED (-10000) /* below every libssh2 error code */

/* Pushes a table with the attributes (and name when not NULL). */
static void push_attrs(lua_State *L, const LIBSSH2_SFTP_ATTRIBUTES *a,
                       const char *name, size_t nlen) {
  lua_createtable(L, 0, 8);
  if (name != NULL) {
    lua_pushlstring(L, name, nlen);
    lua_setfield(L, -2, "name");
  }
  if (a->flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) {
    unsigned long t = a->permissions & LIBSSH2_SFTP_S_IFMT;
    lua_pushstring(L, t == LIBSSH2_SFTP_S_IFDIR   ? "dir"
                      : t == LIBSSH2_SFTP_S_IFREG ? "file"
                      : t == LIBSSH2_SFTP_S_IFLNK ? "link"
                                                  : "other");
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)(a->permissions & 07777));
    lua_setfield(L, -2, "mode");
  }
  if (a->flags & LIBSSH2_SFTP_ATTR_SIZE) {
    lua_pushinteger(L, (lua_Integer)a->filesize);
    lua_setfield(L, -2, "size");
  }
  if (a->flags & LIBSSH2_SFTP_ATTR_ACMODTIME) {
    lua_pushinteger(L, (lua_Integer)a->mtime);
    lua_setfield(L, -2, "mtime");
    lua_pushinteger(L, (lua_Integer)a->atime);
    lua_setfield(L, -2, "atime");
  }
  if (a->flags & LIBSSH2_SFTP_ATTR_UIDGID) {
    lua_pushinteger(L, (lua_Integer)a->uid);
    lua_setfield(L, -2, "uid");
    lua_pushinteger(L, (lua_Integer)a->gid);
    lua_setfield(L, -2, "gid");
  }
}

/* session:stat(path, lstat) -> attributes | nil, code, message */
static int fs_stat(lua_State *L) {
  ck_session *s = sftp_check_session(L, 1, 1);
  size_t len;
  const char *path = luaL_checklstring(L, 2, &len);
  int link = lua_toboolean(L, 3);
  LIBSSH2_SFTP_ATTRIBUTES a;
  memset(&a, 0, sizeof a);
  if (libssh2_sftp_stat_ex(s->sftp, path, (unsigned int)len,
                           link ? LIBSSH2_SFTP_LSTAT : LIBSSH2_SFTP_STAT, &a) != 0)
    return sftp_fail(L, s, link ? "lstat" : "stat", path);
  push_attrs(L, &a, NULL, 0);
  return 1;
}

/* session:mkdir(path, mode) -> true | nil, code, message */
static int fs_mkdir(lua_State *L) {
  ck_session *s = sftp_check_session(L, 1, 1);
  size_t len;
  const char *path = luaL_checklstring(L, 2, &len);
  long mode = (long)luaL_optinteger(L, 3, 0755);
  if (libssh2_sftp_mkdir_ex(s->sftp, path, (unsigned int)len, mode) != 0)
    return sftp_fail(L, s, "mkdir", path);
  lua_pushboolean(L, 1);
  return 1;
}

/* An operation on one path: true | nil, code, message. */
static int path_op(lua_State *L, const char *what,
                   int (*op)(LIBSSH2_SFTP *, const char *, unsigned int)) {
  ck_session *s = sftp_check_session(L, 1, 1);
  size_t len;
  const char *path = luaL_checklstring(L, 2, &len);
  if (op(s->sftp, path, (unsigned int)len) != 0) return sftp_fail(L, s, what, path);
  lua_pushboolean(L, 1);
  return 1;
}

/* session:rmdir(path) -> true | nil, code, message */
static int fs_rmdir(lua_State *L) {
  return path_op(L, "rmdir", libssh2_sftp_rmdir_ex);
}

/* session:remove(path) -> true | nil, code, message */
static int fs_remove(lua_State *L) {
  return path_op(L, "remove", libssh2_sftp_unlink_ex);
}

/* session:rename(from, to) -> true | nil, code, message. SFTP v3 (OpenSSH)
 * refuses to replace an existing target; the Lua side handles overwrite. */
static int fs_rename(lua_State *L) {
  ck_session *s = sftp_check_session(L, 1, 1);
  size_t fl, tl;
  const char *from = luaL_checklstring(L, 2, &fl);
  const char *to = luaL_checklstring(L, 3, &tl);
  if (libssh2_sftp_rename_ex(s->sftp, from, (unsigned int)fl, to,
                             (unsigned int)tl,
                             LIBSSH2_SFTP_RENAME_OVERWRITE |
                                 LIBSSH2_SFTP_RENAME_ATOMIC |
                                 LIBSSH2_SFTP_RENAME_NATIVE) != 0)
    return sftp_fail(L, s, "rename", from);
  lua_pushboolean(L, 1);
  return 1;
}

/* session:realpath(path) -> absolute path | nil, code, message */
static int fs_realpath(lua_State *L) {
  ck_session *s = sftp_check_session(L, 1, 1);
  size_t len;
  const char *path = luaL_checklstring(L, 2, &len);
  char out[4096];
  int n = libssh2_sftp_symlink_ex(s->sftp, path, (unsigned int)len, out,
                                  sizeof out, LIBSSH2_SFTP_REALPATH);
  if (n < 0) return sftp_fail(L, s, "realpath", path);
  lua_pushlstring(L, out, (size_t)n);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Handles                                                                   */

void sftp_handle_close(ck_handle *fh) {
  ck_session *s = fh->s;
  if (fh->h != NULL) {
    /* A broken session gets no goodbye: with its connection shut libssh2
     * gives up at once and frees the handle. A close that got no answer
     * breaks it: libssh2 keeps such a handle to wait again (a leak). */
    if (s != NULL && s->broken && s->sock >= 0) shutdown(s->sock, SHUT_RDWR);
    if (libssh2_sftp_close_handle(fh->h) == LIBSSH2_ERROR_TIMEOUT && s != NULL &&
        s->sock >= 0) {
      s->broken = 1;
      shutdown(s->sock, SHUT_RDWR);
      libssh2_sftp_close_handle(fh->h);
    }
  }
  fh->h = NULL;
  if (fh->s != NULL) {
    if (fh->prev) fh->prev->next = fh->next;
    else fh->s->handles = fh->next;
    if (fh->next) fh->next->prev = fh->prev;
    fh->s = NULL;
  }
  fh->prev = fh->next = NULL;
  free(fh->buf);
  fh->buf = NULL;
  fh->cap = 0;
}

/* Pushes a closed handle userdata of class tname that keeps the session at
 * index 1 alive. */
static ck_handle *new_handle(lua_State *L, const char *tname) {
  ck_handle *fh = (ck_handle *)lua_newuserdatauv(L, sizeof *fh, 1);
  memset(fh, 0, sizeof *fh);
  luaL_setmetatable(L, tname);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  return fh;
}

/* Links an opened libssh2 handle into the session's list. */
static void attach(ck_session *s, ck_handle *fh, LIBSSH2_SFTP_HANDLE *h) {
  fh->h = h;
  fh->s = s;
  fh->prev = NULL;
  fh->next = s->handles;
  if (s->handles) s->handles->prev = fh;
  s->handles = fh;
}

static ck_handle *check_handle(lua_State *L, int i, const char *tname,
                               const char *what) {
  ck_handle *fh = (ck_handle *)luaL_checkudata(L, i, tname);
  if (fh->h == NULL || fh->s == NULL || fh->s->ssh == NULL)
    luaL_error(L, "attempt to use a closed %s", what);
  if (fh->s->busy) luaL_error(L, "SFTP session is busy with a parallel transfer");
  return fh;
}

/* session:open(path, flags, mode) -> file | nil, code, message. flags is a
 * string of r (read) w (write) c (create) t (truncate) a (append)
 * x (exclusive). */
static int fs_open(lua_State *L) {
  ck_session *s = sftp_check_session(L, 1, 1);
  size_t len;
  const char *path = luaL_checklstring(L, 2, &len);
  const char *fl = luaL_checkstring(L, 3);
  long mode = (long)luaL_optinteger(L, 4, 0644);
  unsigned long flags = 0;
  LIBSSH2_SFTP_HANDLE *h;
  ck_handle *fh;
  for (; *fl; fl++) {
    switch (*fl) {
      case 'r': flags |= LIBSSH2_FXF_READ; break;
      case 'w': flags |= LIBSSH2_FXF_WRITE; break;
      case 'c': flags |= LIBSSH2_FXF_CREAT; break;
      case 't': flags |= LIBSSH2_FXF_TRUNC; break;
      case 'a': flags |= LIBSSH2_FXF_APPEND; break;
      case 'x': flags |= LIBSSH2_FXF_EXCL; break;
      default: return luaL_argerror(L, 3, "unknown open flag");
    }
  }
  fh = new_handle(L, CK_SFTP_FILE);
  h = libssh2_sftp_open_ex(s->sftp, path, (unsigned int)len, flags, mode,
                           LIBSSH2_SFTP_OPENFILE);
  if (h == NULL) return sftp_fail(L, s, "open", path);
  attach(s, fh, h);
  return 1;
}

/* session:opendir(path) -> dir | nil, code, message */
static int fs_opendir(lua_State *L) {
  ck_session *s = sftp_check_session(L, 1, 1);
  size_t len;
  const char *path = luaL_checklstring(L, 2, &len);
  LIBSSH2_SFTP_HANDLE *h;
  ck_handle *fh = new_handle(L, CK_SFTP_DIR);
  h = libssh2_sftp_open_ex(s->sftp, path, (unsigned int)len, 0, 0,
                           LIBSSH2_SFTP_OPENDIR);
  if (h == NULL) return sftp_fail(L, s, "opendir", path);
  attach(s, fh, h);
  return 1;
}

/* Makes the file's scratch buffer at least n bytes; false when out of
 * memory. */
static int ensure_buf(ck_handle *fh, size_t n) {
  if (n > fh->cap) {
    char *nb = (char *)realloc(fh->buf, n);
    if (nb == NULL) return 0;
    fh->buf = nb;
    fh->cap = n;
  }
  return 1;
}

static ssize_t pump_io(ck_handle *fh, const ck_wait *w, int put, char *buf,
                       size_t n);

/* Ends a file call cut short by an interrupt: the session is broken (libssh2
 * cannot take up the replies it was waiting for) and the interpreter's hook
 * raises as the call returns. */
static int give_way(lua_State *L, ck_handle *fh, const ck_wait *w) {
  fh->s->broken = 1;
  shutdown(fh->s->sock, SHUT_RDWR);
  ck_wait_give_way(L, w);
  return ck_fail(L, "cancelled", "interrupted");
}

/* file:read(n) -> string (shorter than n only at end of file; "" at end)
 * | nil, code, message. Loops so libssh2 keeps its read-ahead in flight;
 * each step waits through pump_io (the session timeout to the millisecond,
 * and Ctrl-C). */
static int file_read(lua_State *L) {
  ck_handle *fh = check_handle(L, 1, CK_SFTP_FILE, "SFTP file");
  lua_Integer n = luaL_checkinteger(L, 2);
  size_t got = 0;
  ck_wait w;
  luaL_argcheck(L, n >= 0 && n <= (lua_Integer)MAX_READ, 2, "bad read size");
  if (!ensure_buf(fh, (size_t)n)) return luaL_error(L, "out of memory");
  ck_wait_begin(L, &w);
  while (got < (size_t)n) {
    ssize_t rc = pump_io(fh, &w, 0, fh->buf + got, (size_t)n - got);
    if (rc == 0) break;
    if (rc == IO_INTERRUPTED) return give_way(L, fh, &w);
    if (rc < 0) return sftp_fail(L, fh->s, "read", NULL);
    got += (size_t)rc;
  }
  lua_pushlstring(L, fh->buf, got);
  return 1;
}

/* file:write(s) -> true | nil, code, message: all of s or an error (each
 * step waits as file:read's do). */
static int file_write(lua_State *L) {
  ck_handle *fh = check_handle(L, 1, CK_SFTP_FILE, "SFTP file");
  size_t len, done = 0;
  const char *data = luaL_checklstring(L, 2, &len);
  ck_wait w;
  ck_wait_begin(L, &w);
  while (done < len) {
    /* (pump_io does not write through its buffer argument) */
    ssize_t rc = pump_io(fh, &w, 1, (char *)(uintptr_t)(data + done), len - done);
    if (rc == IO_INTERRUPTED) return give_way(L, fh, &w);
    if (rc < 0) return sftp_fail(L, fh->s, "write", NULL);
    done += (size_t)rc;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* Calls the progress function at index `fn` (if any) with done, total under
 * lua_pcall. Returns 0 to go on; else leaves nil, code, value on the stack
 * and returns 3: code "callback" with the raised value (the Lua side raises
 * it again) or "aborted" when the function returned false. */
int sftp_report_progress(lua_State *L, int fn, lua_Integer done,
                         lua_Integer total) {
  if (lua_isnoneornil(L, fn)) return 0;
  lua_pushvalue(L, fn);
  lua_pushinteger(L, done);
  lua_pushinteger(L, total);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    lua_pushnil(L);
    lua_pushliteral(L, "callback");
    lua_pushvalue(L, -3);
    return 3;
  }
  if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    return ck_fail(L, "aborted", "transfer aborted by the progress callback");
  }
  lua_pop(L, 1);
  return 0;
}

/* One libssh2_sftp_read (or, with put, libssh2_sftp_write) of a pump.
 * libssh2's own wait would not see an interrupt (interrupt.h), so it is
 * given a timeout of one slice: a call that times out is called again (its
 * state is kept, as after EAGAIN) until an interrupt came or the session
 * timeout has passed since the first call, as libssh2 counts it. Returns
 * libssh2's result, or IO_INTERRUPTED (libssh2 is then left waiting for
 * replies it cannot take up later). */
static ssize_t pump_io(ck_handle *fh, const ck_wait *w, int put, char *buf,
                       size_t n) {
  ck_session *s = fh->s;
  long long deadline = s->timeout_ms > 0 ? ck_now_ms() + s->timeout_ms : 0;
  ssize_t rc;
  libssh2_session_set_timeout(s->ssh, CK_WAIT_SLICE_MS);
  for (;;) {
    rc = put ? libssh2_sftp_write(fh->h, buf, n)
             : libssh2_sftp_read(fh->h, buf, n);
    if (ck_wait_interrupted(w)) {
      rc = IO_INTERRUPTED;
      break;
    }
    if (rc != LIBSSH2_ERROR_TIMEOUT || (deadline > 0 && ck_now_ms() >= deadline))
      break;
  }
  libssh2_session_set_timeout(s->ssh, s->timeout_ms);
  return rc;
}

/* Copies the remote file from its current offset into fd. Every read asks
 * libssh2 for a whole chunk, so its read-ahead (4 chunks) stays full; the
 * data is written out as it arrives and progress runs once per chunk.
 * Returns 0, the number of values pushed for a failure, or -1 when an
 * interrupt came (nothing pushed). */
static int pump_get(lua_State *L, ck_handle *fh, int fd, const char *lpath,
                    size_t chunk, lua_Integer offset, lua_Integer *done,
                    lua_Integer total, const ck_wait *wt) {
  size_t since = 0;
  int r;
  for (;;) {
    ssize_t n = pump_io(fh, wt, 0, fh->buf, chunk);
    size_t w;
    if (n == IO_INTERRUPTED) return -1;
    if (n < 0) return sftp_fail(L, fh->s, "read", NULL);
    for (w = 0; w < (size_t)n;) {
      ssize_t k = write(fd, fh->buf + w, (size_t)n - w);
      if (k < 0 && errno == EINTR) continue;
      if (k < 0) return ck_fail(L, "local_io", "write %s: %s", lpath, strerror(errno));
      w += (size_t)k;
    }
    *done += n;
    since += (size_t)n;
    if (n == 0 && since == 0 && *done > offset) return 0; /* reported */
    if (n == 0 || since >= chunk) {
      if ((r = sftp_report_progress(L, 6, *done, total < 0 ? *done : total)) != 0) return r;
      since = 0;
      if (n == 0) return 0;
      if (fh->h == NULL) /* the callback closed it */
        return ck_fail(L, "closed", "the file was closed during the transfer");
    }
  }
}

/* Copies fd into the remote file from its current offset. The buffer holds
 * two chunks and is topped up from the file whenever less than one chunk
 * is unacknowledged, so libssh2 always has data in flight (it copies what
 * it sends; the next call passes the first unacknowledged byte). Returns
 * as pump_get. */
static int pump_put(lua_State *L, ck_handle *fh, int fd, const char *lpath,
                    size_t chunk, lua_Integer offset, lua_Integer *done,
                    lua_Integer total, const ck_wait *wt) {
  size_t start = 0, end = 0, since = 0, cap = fh->cap;
  int eof = 0, r;
  for (;;) {
    ssize_t n;
    if (!eof && end - start < chunk) {
      if (start > 0) {
        memmove(fh->buf, fh->buf + start, end - start);
        end -= start;
        start = 0;
      }
      while (end < cap && !eof) {
        ssize_t k = read(fd, fh->buf + end, cap - end);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return ck_fail(L, "local_io", "read %s: %s", lpath, strerror(errno));
        if (k == 0) eof = 1;
        end += (size_t)(k > 0 ? k : 0);
      }
    }
    if (end == start) break;
    n = pump_io(fh, wt, 1, fh->buf + start, end - start);
    if (n == IO_INTERRUPTED) return -1;
    if (n < 0) return sftp_fail(L, fh->s, "write", NULL);
    start += (size_t)n;
    *done += n;
    since += (size_t)n;
    if (since >= chunk) {
      if ((r = sftp_report_progress(L, 6, *done, total < 0 ? *done : total)) != 0) return r;
      since = 0;
      if (fh->h == NULL)
        return ck_fail(L, "closed", "the file was closed during the transfer");
    }
  }
  if (since > 0 || *done == offset)
    return sftp_report_progress(L, 6, *done, total < 0 ? *done : total);
  return 0;
}

/* file:pump(direction, localpath, offset, chunk, progress, total)
 * -> bytes done | nil, code, message | nil, "callback", raised value.
 * "get" copies this remote file from `offset` into the local file (opened
 * at the same offset; created and truncated when offset is 0); "put" copies
 * the local file from `offset` into this remote file. Data goes straight
 * between the local descriptor and libssh2, no Lua string per block.
 * progress(done, total) runs once per chunk under lua_pcall, never inside a
 * libssh2 call; its error comes back as code "callback". An interrupt
 * (interrupt.h) ends the transfer with the local file closed and the
 * session broken (libssh2 cannot take up the replies it was waiting for),
 * and gives way to the interrupt hook. */
static int file_pump(lua_State *L) {
  ck_handle *fh = check_handle(L, 1, CK_SFTP_FILE, "SFTP file");
  const char *dir = luaL_checkstring(L, 2);
  const char *lpath = luaL_checkstring(L, 3);
  lua_Integer offset = luaL_checkinteger(L, 4);
  lua_Integer chunk = luaL_checkinteger(L, 5);
  lua_Integer total = luaL_optinteger(L, 7, -1);
  lua_Integer done = offset;
  int get = strcmp(dir, "get") == 0, fd, r;
  ck_wait w;
  luaL_argcheck(L, get || strcmp(dir, "put") == 0, 2, "\"get\" or \"put\" expected");
  luaL_argcheck(L, offset >= 0, 4, "negative offset");
  luaL_argcheck(L, chunk >= 4096 && chunk <= (lua_Integer)MAX_READ / 2, 5, "bad chunk size");
  if (!ensure_buf(fh, (size_t)chunk * (get ? 1 : 2))) return luaL_error(L, "out of memory");
  fd = get ? open(lpath, O_WRONLY | O_CLOEXEC | (offset ? 0 : O_CREAT | O_TRUNC), 0666)
           : open(lpath, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ck_fail(L, "local_io", "open %s: %s", lpath, strerror(errno));
  if (offset > 0 && lseek(fd, (off_t)offset, SEEK_SET) < 0) {
    r = ck_fail(L, "local_io", "seek %s: %s", lpath, strerror(errno));
    close(fd);
    return r;
  }
  libssh2_sftp_seek64(fh->h, (libssh2_uint64_t)offset);
  ck_wait_begin(L, &w);
  r = get ? pump_get(L, fh, fd, lpath, (size_t)chunk, offset, &done, total, &w)
          : pump_put(L, fh, fd, lpath, (size_t)chunk, offset, &done, total, &w);
  if (r < 0) {
    close(fd);
    return give_way(L, fh, &w);
  }
  if (close(fd) != 0 && r == 0 && get)
    r = ck_fail(L, "local_io", "close %s: %s", lpath, strerror(errno));
  if (r != 0) return r;
  lua_pushinteger(L, done);
  return 1;
}

/* file:seek(offset): sets the absolute position. */
static int file_seek(lua_State *L) {
  ck_handle *fh = check_handle(L, 1, CK_SFTP_FILE, "SFTP file");
  lua_Integer off = luaL_checkinteger(L, 2);
  luaL_argcheck(L, off >= 0, 2, "negative offset");
  libssh2_sftp_seek64(fh->h, (libssh2_uint64_t)off);
  return 0;
}

/* file:tell() -> absolute position */
static int file_tell(lua_State *L) {
  ck_handle *fh = check_handle(L, 1, CK_SFTP_FILE, "SFTP file");
  lua_pushinteger(L, (lua_Integer)libssh2_sftp_tell64(fh->h));
  return 1;
}

/* file:fstat() -> attributes | nil, code, message */
static int file_fstat(lua_State *L) {
  ck_handle *fh = check_handle(L, 1, CK_SFTP_FILE, "SFTP file");
  LIBSSH2_SFTP_ATTRIBUTES a;
  memset(&a, 0, sizeof a);
  if (libssh2_sftp_fstat_ex(fh->h, &a, 0) != 0)
    return sftp_fail(L, fh->s, "fstat", NULL);
  push_attrs(L, &a, NULL, 0);
  return 1;
}

/* file:fsync() -> true | nil, code, message (fsync@openssh.com) */
static int file_fsync(lua_State *L) {
  ck_handle *fh = check_handle(L, 1, CK_SFTP_FILE, "SFTP file");
  if (libssh2_sftp_fsync(fh->h) != 0) return sftp_fail(L, fh->s, "fsync", NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* dir:next() -> entry table (without . and ..) | nil at the end
 * | nil, code, message */
static int dir_next(lua_State *L) {
  ck_handle *fh = check_handle(L, 1, CK_SFTP_DIR, "SFTP directory listing");
  char name[4096];
  for (;;) {
    LIBSSH2_SFTP_ATTRIBUTES a;
    int rc;
    memset(&a, 0, sizeof a);
    rc = libssh2_sftp_readdir_ex(fh->h, name, sizeof name, NULL, 0, &a);
    if (rc < 0) return sftp_fail(L, fh->s, "readdir", NULL);
    if (rc == 0) {
      lua_pushnil(L);
      return 1;
    }
    if ((rc == 1 && name[0] == '.') ||
        (rc == 2 && name[0] == '.' && name[1] == '.'))
      continue;
    push_attrs(L, &a, name, (size_t)rc);
    return 1;
  }
}

void sftp_close_deferred(ck_session *s) {
  int i;
  for (i = 0; i < s->ndeferred; i++) libssh2_sftp_close_handle(s->deferred[i]);
  free(s->deferred);
  s->deferred = NULL;
  s->ndeferred = 0;
}

/* __gc for files and directories. While a parallel transfer's thread uses
 * the session, libssh2 must not be called from here: the handle is unlinked
 * and left for sftp_close_deferred. */
static int handle_gc(lua_State *L) {
  ck_handle *fh = (ck_handle *)lua_touserdata(L, 1);
  ck_session *s = fh ? fh->s : NULL;
  if (s != NULL && s->busy && fh->h != NULL) {
    LIBSSH2_SFTP_HANDLE **d = (LIBSSH2_SFTP_HANDLE **)realloc(
        s->deferred, (size_t)(s->ndeferred + 1) * sizeof *d);
    if (d != NULL) { /* else it stays open until the session closes */
      s->deferred = d;
      d[s->ndeferred++] = fh->h;
    }
    fh->h = NULL;
  }
  if (fh != NULL) sftp_handle_close(fh);
  return 0;
}

/* close for files and directories: idempotent; serves close/__gc/__close. */
static int handle_close(lua_State *L) {
  ck_handle *fh = (ck_handle *)lua_touserdata(L, 1);
  if (fh == NULL || (!luaL_testudata(L, 1, CK_SFTP_FILE) &&
                     !luaL_testudata(L, 1, CK_SFTP_DIR)))
    return luaL_argerror(L, 1, "SFTP file or directory expected");
  if (fh->s != NULL && fh->s->busy)
    return luaL_error(L, "SFTP session is busy with a parallel transfer");
  sftp_handle_close(fh);
  return 0;
}

static int handle_is_open(lua_State *L) {
  ck_handle *fh = (ck_handle *)lua_touserdata(L, 1);
  lua_pushboolean(L, fh != NULL && fh->h != NULL);
  return 1;
}

static int file_tostring(lua_State *L) {
  ck_handle *fh = (ck_handle *)luaL_checkudata(L, 1, CK_SFTP_FILE);
  lua_pushstring(L, fh->h ? "connkit.sftp.file (open)" : "connkit.sftp.file (closed)");
  return 1;
}

static int dir_tostring(lua_State *L) {
  ck_handle *fh = (ck_handle *)luaL_checkudata(L, 1, CK_SFTP_DIR);
  lua_pushstring(L, fh->h ? "connkit.sftp.dir (open)" : "connkit.sftp.dir (closed)");
  return 1;
}

static const luaL_Reg fs_methods[] = {
    {"stat", fs_stat},       {"mkdir", fs_mkdir},   {"rmdir", fs_rmdir},
    {"remove", fs_remove},   {"rename", fs_rename}, {"realpath", fs_realpath},
    {"open", fs_open},       {"opendir", fs_opendir}, {NULL, NULL}};

static const luaL_Reg file_methods[] = {
    {"read", file_read},   {"write", file_write}, {"seek", file_seek},
    {"tell", file_tell},   {"fstat", file_fstat}, {"fsync", file_fsync},
    {"pump", file_pump},
    {"close", handle_close}, {"is_open", handle_is_open}, {NULL, NULL}};

static const luaL_Reg file_meta[] = {{"__gc", handle_gc},
                                     {"__close", handle_close},
                                     {"__tostring", file_tostring},
                                     {NULL, NULL}};

static const luaL_Reg dir_methods[] = {{"next", dir_next},
                                       {"close", handle_close},
                                       {"is_open", handle_is_open},
                                       {NULL, NULL}};

static const luaL_Reg dir_meta[] = {{"__gc", handle_gc},
                                    {"__close", handle_close},
                                    {"__tostring", dir_tostring},
                                    {NULL, NULL}};

void sftp_fs_open(lua_State *L) {
  luaL_setfuncs(L, fs_methods, 0);
  compat_newclass(L, CK_SFTP_FILE, file_methods, file_meta);
  compat_newclass(L, CK_SFTP_DIR, dir_methods, dir_meta);
}
