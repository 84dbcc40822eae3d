/*
 * lock.c - cross-process exclusive locks (flock on a lock file) for the
 * single-flight refresh, plus the few durable file operations plain Lua
 * lacks, used by the file store:
 *
 *   core.lock_file(path [, timeout]) -> lock | nil, code, message
 *   lock:unlock() (also __gc, __close; idempotent), lock:held()
 *   core.mkdir(path [, mode])        -> true | nil, code, message
 *   core.write_file_atomic(path, data [, mode]) -> true | nil, code, message
 *   core.read_file(path [, private]) -> data | nil, code, message
 *   core.remove_stale_temps(dir, max_age) -> count | nil, code, message
 *
 * Every descriptor is opened O_CLOEXEC (a child started by the application
 * must not inherit a lock); lock files are opened O_NOFOLLOW. Codes:
 * "not_found", "io", "lock_timeout", "insecure_permissions".
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "connkit.h"

#define LOCK_CLASS "connkit.lock"
#define CK_MAX_READ (64 * 1024 * 1024)

typedef struct {
  int fd; /* -1 when released */
} ck_lock;

/* ------------------------------------------------------------------------ */
/* Lock objects                                                              */

/* Releases the lock (closing the descriptor drops the flock); idempotent. */
static void lock_release(ck_lock *lk) {
  if (lk->fd >= 0) {
    (void)flock(lk->fd, LOCK_UN);
    (void)close(lk->fd);
    lk->fd = -1;
  }
}

/* Seconds on the monotonic clock. */
static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_seconds(double s) {
  struct timespec ts;
  if (s <= 0) return;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Takes LOCK_EX on fd: blocking when timeout < 0, else polling with a short
 * back-off until the deadline. Returns 0, or an errno (EWOULDBLOCK on time
 * out). */
static int flock_wait(int fd, double timeout) {
  double deadline, step = 0.001;
  if (timeout < 0) {
    while (flock(fd, LOCK_EX) != 0) {
      if (errno != EINTR) return errno;
    }
    return 0;
  }
  deadline = mono_now() + timeout;
  for (;;) {
    double left;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return 0;
    if (errno != EWOULDBLOCK && errno != EINTR) return errno;
    left = deadline - mono_now();
    if (left <= 0) return EWOULDBLOCK;
    sleep_seconds(step < left ? step : left);
    if (step < 0.025) step *= 2;
  }
}

/* lock_file(path [, timeout_seconds]) -> lock, or nil, code, message.
 * Pushes the userdata first (marked released), then opens and locks, so a
 * Lua error on the way leaks no descriptor. No timeout: wait for ever. */
static int lock_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  double timeout =
      lua_isnoneornil(L, 2) ? -1.0 : (double)luaL_checknumber(L, 2);
  ck_lock *lk;
  int rc;
  luaL_argcheck(L, lua_isnoneornil(L, 2) || timeout >= 0, 2,
                "timeout must be a non-negative number of seconds");
  lk = (ck_lock *)lua_newuserdatauv(L, sizeof *lk, 0);
  lk->fd = -1;
  luaL_setmetatable(L, LOCK_CLASS);
  lk->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lk->fd < 0)
    return ck_fail(L, "io", "cannot open lock file %s: %s", path,
                   strerror(errno));
  rc = flock_wait(lk->fd, timeout);
  if (rc != 0) {
    lock_release(lk);
    if (rc == EWOULDBLOCK)
      return ck_fail(L, "lock_timeout",
                     "timed out after %.3gs waiting for lock %s", timeout,
                     path);
    return ck_fail(L, "io", "cannot lock %s: %s", path, strerror(rc));
  }
  return 1;
}

/* The lock at i (released or not). */
static ck_lock *check_lock(lua_State *L, int i) {
  return (ck_lock *)luaL_checkudata(L, i, LOCK_CLASS);
}

/* lock:unlock() -> true; safe to call again; also __gc and __close. */
static int lock_unlock(lua_State *L) {
  lock_release(check_lock(L, 1));
  lua_pushboolean(L, 1);
  return 1;
}

static int lock__gc(lua_State *L) {
  lock_release(check_lock(L, 1));
  return 0;
}

/* lock:held() -> boolean */
static int lock_held(lua_State *L) {
  lua_pushboolean(L, check_lock(L, 1)->fd >= 0);
  return 1;
}

static int lock__tostring(lua_State *L) {
  ck_lock *lk = check_lock(L, 1);
  lua_pushfstring(L, "connkit.lock (%s)", lk->fd >= 0 ? "held" : "released");
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Durable file helpers                                                      */

/* Optional permission mode at i (an integer such as 384 == 0600). */
static mode_t opt_mode(lua_State *L, int i, mode_t def) {
  lua_Integer m = luaL_optinteger(L, i, (lua_Integer)def);
  luaL_argcheck(L, m >= 0 && m <= 07777, i,
                "mode must be 0..4095 (e.g. 448 for 0700)");
  return (mode_t)m;
}

/* Creates dir with mode (and any missing parents with the same mode). An
 * existing directory is accepted as it is. Returns 0 or an errno; *bad
 * receives the path prefix that failed. */
static int mkdir_p(char *path, mode_t mode, const char **bad) {
  char *p = path;
  struct stat st;
  *bad = path;
  while (*p == '/')
    p++;
  for (;;) {
    char *slash = strchr(p, '/');
    int last;
    while (slash != NULL && slash[1] == '/')
      slash++;
    last = (slash == NULL || slash[1] == '\0');
    if (slash) *slash = '\0';
    if (mkdir(path, mode) != 0) {
      int e = errno;
      if (e != EEXIST) return e;
      if (stat(path, &st) != 0) return errno;
      if (!S_ISDIR(st.st_mode)) return ENOTDIR;
    } else if (last && chmod(path, mode) != 0) {
      return errno; /* the umask narrowed it; set exactly what was asked */
    }
    if (slash) *slash = '/';
    if (last) return 0;
    p = slash + 1;
  }
}

/* mkdir(path [, mode = 0700]) -> true, or nil, "io", message. */
static int fs_mkdir(lua_State *L) {
  size_t n;
  const char *path = luaL_checklstring(L, 1, &n);
  mode_t mode = opt_mode(L, 2, 0700);
  char *copy = (char *)lua_newuserdatauv(L, n + 1, 0);
  const char *bad;
  int e;
  luaL_argcheck(L, n > 0, 1, "path must not be empty");
  memcpy(copy, path, n + 1);
  e = mkdir_p(copy, mode, &bad);
  if (e != 0)
    return ck_fail(L, "io", "cannot create directory %s: %s", bad, strerror(e));
  lua_pushboolean(L, 1);
  return 1;
}

/* Writes all n bytes to fd; 0 or an errno. */
static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* fsyncs the directory holding path (the part before the last '/'). */
static int fsync_parent(const char *path, char *scratch) {
  const char *slash = strrchr(path, '/');
  int fd, e = 0;
  if (slash == NULL) {
    strcpy(scratch, ".");
  } else if (slash == path) {
    strcpy(scratch, "/");
  } else {
    memcpy(scratch, path, (size_t)(slash - path));
    scratch[slash - path] = '\0';
  }
  fd = open(scratch, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  if (fsync(fd) != 0 && errno != EINVAL) e = errno;
  close(fd);
  return e;
}

/* The marker of temp files in their names: "<path>.tmp.<pid>.XXXXXX". */
#define TMP_MARK ".tmp."

/* write_file_atomic(path, data [, mode = 0600]) -> true, or nil, "io", msg.
 * Writes a temp file beside path, fsyncs it, renames it over path and fsyncs
 * the directory: after a crash at any moment path holds the old or the new
 * content, never a mix. The temp file is removed on failure. While it
 * exists its writer holds a flock on it, and its name carries the writer's
 * PID: remove_stale_temps tells a live writer's file from a crashed one's. */
static int fs_write_file_atomic(lua_State *L) {
  size_t pn, dn;
  const char *path = luaL_checklstring(L, 1, &pn);
  const char *data = luaL_checklstring(L, 2, &dn);
  mode_t mode = opt_mode(L, 3, 0600);
  char *tmp = (char *)lua_newuserdatauv(L, pn + 48, 0);
  const char *what = "create temp file for";
  int fd, e = 0;
  luaL_argcheck(L, pn > 0, 1, "path must not be empty");
  memcpy(tmp, path, pn);
  snprintf(tmp + pn, 48, TMP_MARK "%ld.XXXXXX", (long)getpid());
  fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0)
    return ck_fail(L, "io", "cannot %s %s: %s", what, path, strerror(errno));
  if (flock(fd, LOCK_EX) != 0) {
    e = errno;
    what = "lock the temp file of";
  } else if (fchmod(fd, mode) != 0) {
    e = errno;
    what = "set the mode of";
  } else if ((e = write_all(fd, data, dn)) != 0) {
    what = "write";
  } else if (fsync(fd) != 0) {
    e = errno;
    what = "fsync";
  }
  /* renamed while still open and locked: the temp file is never unlocked
   * under its temp name while its writer lives (the data is fsynced, so a
   * failing close after that loses nothing) */
  if (e == 0 && rename(tmp, path) != 0) {
    e = errno;
    what = "rename temp file onto";
  }
  (void)close(fd);
  if (e != 0) {
    (void)unlink(tmp);
    return ck_fail(L, "io", "cannot %s %s: %s", what, path, strerror(e));
  }
  if ((e = fsync_parent(path, tmp)) != 0)
    return ck_fail(L, "io", "cannot fsync the directory of %s: %s", path,
                   strerror(e));
  lua_pushboolean(L, 1);
  return 1;
}

/* read_file(path [, private]) -> data, or nil, code, message. Refuses what
 * is not a regular file. private: refuse a file that group or others may
 * access ("insecure_permissions") and cleanse the read buffer, for keys.
 * A missing file gives code "not_found". */
static int fs_read_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int private_ = lua_toboolean(L, 2);
  struct stat st;
  char *buf;
  size_t got = 0, cap;
  /* The descriptor is owned by a lock object (its __gc closes it), so a Lua
   * error while allocating the buffer cannot leak it. */
  ck_lock *holder = (ck_lock *)lua_newuserdatauv(L, sizeof *holder, 0);
  holder->fd = -1;
  luaL_setmetatable(L, LOCK_CLASS);
  /* Symlinks are followed (mounted secrets often are symlinks): the mode
   * check is on the file actually opened. O_NONBLOCK keeps a FIFO from
   * blocking the open; it is then refused as not a regular file. */
  holder->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (holder->fd < 0) {
    int e = errno;
    return ck_fail(L, e == ENOENT ? "not_found" : "io", "cannot open %s: %s",
                   path, strerror(e));
  }
  if (fstat(holder->fd, &st) != 0) {
    int e = errno;
    lock_release(holder);
    return ck_fail(L, "io", "cannot stat %s: %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    lock_release(holder);
    return ck_fail(L, "io", "%s is not a regular file", path);
  }
  if (private_ && (st.st_mode & 077) != 0) {
    lock_release(holder);
    return ck_fail(
        L, "insecure_permissions",
        "%s is accessible by group or others (mode %03o); chmod 600 it", path,
        (unsigned)(st.st_mode & 0777));
  }
  if (st.st_size > CK_MAX_READ) {
    lock_release(holder);
    return ck_fail(L, "io", "%s is too large", path);
  }
  cap = (size_t)st.st_size + 1;
  buf = (char *)lua_newuserdatauv(L, cap, 0);
  for (;;) {
    ssize_t r = read(holder->fd, buf + got, cap - got);
    if (r < 0) {
      int e = errno;
      if (e == EINTR) continue;
      lock_release(holder);
      if (private_) ck_cleanse(buf, cap);
      return ck_fail(L, "io", "cannot read %s: %s", path, strerror(e));
    }
    if (r == 0 || (got += (size_t)r) == cap)
      break; /* cap: file grew; take what fits */
  }
  lock_release(holder);
  lua_pushlstring(L, buf, got);
  if (private_) ck_cleanse(buf, cap);
  return 1;
}

/* The writer PID in a temp file name after its marker ("<pid>.XXXXXX"), or
 * 0 when it has none (a name from an older version: ".tmp.XXXXXX"). */
static long temp_writer_pid(const char *after_mark) {
  char *end;
  long pid;
  if (*after_mark < '0' || *after_mark > '9') return 0;
  pid = strtol(after_mark, &end, 10);
  return (*end == '.' && pid > 0) ? pid : 0;
}

/* Whether a temp file is stale: nobody holds its flock (a live writer
 * does, from creating it until it is renamed) and it is older than max_age
 * seconds or its writer's PID is gone. The flock is what protects a live
 * writer (also one in another PID namespace); the age and PID rules cover
 * the instant between its creation and the writer's flock. fd: the file,
 * locked here when stale. */
static int temp_is_stale(int fd, const struct stat *st, long pid,
                         double max_age) {
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) return 0; /* a live writer */
  if (difftime(time(NULL), st->st_mtime) > max_age) return 1;
  return pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* remove_stale_temps(dir, max_age) -> number removed, or nil, "io", msg.
 * Removes the temp files a crashed write_file_atomic left in dir (names
 * holding ".rec" TMP_MARK) that are stale (temp_is_stale). Never follows a
 * symlink; leaves anything that is not a regular file. */
static int fs_remove_stale_temps(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  double max_age = (double)luaL_checknumber(L, 2);
  int dfd, removed = 0;
  DIR *d;
  struct dirent *ent;
  dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return ck_fail(L, "io", "cannot open directory %s: %s", dir,
                   strerror(errno));
  d = fdopendir(dfd);
  if (d == NULL) {
    int e = errno;
    close(dfd);
    return ck_fail(L, "io", "cannot read directory %s: %s", dir, strerror(e));
  }
  while ((ent = readdir(d)) != NULL) {
    const char *mark = strstr(ent->d_name, ".rec" TMP_MARK);
    struct stat st;
    int fd;
    if (mark == NULL) continue;
    fd = openat(dfd, ent->d_name,
                O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) continue;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        temp_is_stale(fd, &st,
                      temp_writer_pid(mark + sizeof ".rec" TMP_MARK - 1),
                      max_age) &&
        unlinkat(dfd, ent->d_name, 0) == 0)
      removed++;
    close(fd);
  }
  closedir(d); /* closes dfd */
  lua_pushinteger(L, removed);
  return 1;
}

/* Adds the lock and file functions to the module table on top of the stack
 * and registers the lock class. */
void lock_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"lock_file", lock_file},
      {"mkdir", fs_mkdir},
      {"write_file_atomic", fs_write_file_atomic},
      {"read_file", fs_read_file},
      {"remove_stale_temps", fs_remove_stale_temps},
      {NULL, NULL},
  };
  static const luaL_Reg methods[] = {
      {"unlock", lock_unlock},
      {"held", lock_held},
      {NULL, NULL},
  };
  static const luaL_Reg metamethods[] = {
      {"__gc", lock__gc},
      {"__close", lock__gc},
      {"__tostring", lock__tostring},
      {NULL, NULL},
  };
  compat_newclass(L, LOCK_CLASS, methods, metamethods);
  luaL_setfuncs(L, funcs, 0);
}
