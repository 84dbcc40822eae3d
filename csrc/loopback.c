/*
 * loopback.c - the RFC 8252 loopback redirect listener, and clocks.
 *
 *   core.listen(port) -> listener | nil, code, message
 *       listens on 127.0.0.1 only (port 0: an ephemeral port)
 *   listener.port
 *   listener:accept(timeout) -> target | nil, code, message
 *       waits for one HTTP request and returns its request target
 *       ("/callback?code=..."); the connection waits for reply()
 *   listener:reply(status, html)   answers and closes that connection
 *   listener:close()                     idempotent; also __gc/__close
 *   core.sleep(seconds), core.now() -> seconds (wall clock, sub-second)
 *
 * Connections are plain fds kept in the listener, so nothing leaks if the
 * caller forgets to reply: close() and __gc close them. Up to MAX_PENDING
 * connections are read at once, each for at most CONN_READ_SECONDS: a
 * local client that connects and stays silent cannot keep the browser's
 * callback out.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "connkit.h"
#include "interrupt.h"

#define LISTENER_MT "connkit.loopback"
#define MAX_HEAD 16384
#define MAX_PENDING 8          /* connections read at the same time */
#define CONN_READ_SECONDS 5.0  /* for one connection's request head */

/* A connection whose request head is still arriving. */
typedef struct {
  int fd;       /* -1: a free slot */
  size_t n;     /* bytes in buf */
  double until; /* when it is dropped unless its head is complete */
  char *buf;    /* MAX_HEAD + 1 bytes, malloc'd on accept */
} pending_conn;

typedef struct {
  int fd;   /* listening socket, -1 when closed */
  int conn; /* the accepted connection awaiting a reply, or -1 */
  int port;
  pending_conn pend[MAX_PENDING];
} listener;

static listener *check_listener(lua_State *L, int i) {
  listener *l = (listener *)luaL_checkudata(L, i, LISTENER_MT);
  if (l->fd < 0) luaL_error(L, "attempt to use a closed loopback listener");
  return l;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* core.listen(port) -> listener | nil, code, message */
static int loopback_listen(lua_State *L) {
  lua_Integer port = luaL_optinteger(L, 1, 0);
  struct sockaddr_in a;
  socklen_t alen = sizeof a;
  int one = 1;
  listener *l;
  luaL_argcheck(L, port >= 0 && port <= 65535, 1, "port must be 0-65535");
  l = (listener *)lua_newuserdatauv(L, sizeof *l, 0);
  memset(l, 0, sizeof *l);
  l->fd = l->conn = -1;
  for (int i = 0; i < MAX_PENDING; i++) l->pend[i].fd = -1;
  luaL_setmetatable(L, LISTENER_MT);
  l->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l->fd < 0) return ck_fail(L, "listen", "socket: %s", strerror(errno));
  setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(l->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(l->fd, 8) != 0) {
    int e = errno;
    close(l->fd);
    l->fd = -1;
    return ck_fail(L, "listen", "cannot listen on 127.0.0.1:%d: %s", (int)port,
                   strerror(e));
  }
  getsockname(l->fd, (struct sockaddr *)&a, &alen);
  l->port = ntohs(a.sin_port);
  return 1;
}

static void drop_conn(listener *l) {
  if (l->conn >= 0) close(l->conn);
  l->conn = -1;
}

/* Closes a pending connection and wipes what it sent (it may hold an
 * authorization code). */
static void drop_pending(pending_conn *c) {
  if (c->fd >= 0) close(c->fd);
  if (c->buf != NULL) {
    ck_cleanse(c->buf, c->n);
    free(c->buf);
  }
  c->fd = -1;
  c->buf = NULL;
  c->n = 0;
}

/* Accepts a connection into a free slot (the oldest one is dropped when all
 * are taken). */
static void take_conn(listener *l, double now) {
  pending_conn *slot = NULL;
  int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) return;
  for (int i = 0; i < MAX_PENDING; i++) {
    pending_conn *c = &l->pend[i];
    if (c->fd < 0) {
      slot = c;
      break;
    }
    if (slot == NULL || c->until < slot->until) slot = c;
  }
  drop_pending(slot);
  slot->buf = (char *)malloc(MAX_HEAD + 1);
  if (slot->buf == NULL) {
    close(fd);
    return;
  }
  slot->fd = fd;
  slot->until = now + CONN_READ_SECONDS;
}

/* True when s (n bytes) holds a control character (CR and NUL included). */
static int has_control(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f) return 1;
  return 0;
}

/* Reads what a pending connection has. Returns 1 when its request head is
 * complete (or fills the buffer, or the client stopped sending after some
 * of it: that part is judged), 0 to go on reading, -1 when it closed or
 * failed having sent nothing. */
static int read_pending(pending_conn *c) {
  ssize_t got = recv(c->fd, c->buf + c->n, MAX_HEAD - c->n, MSG_DONTWAIT);
  if (got < 0) return (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
  if (got == 0) return c->n > 0 ? 1 : -1;
  c->n += (size_t)got;
  c->buf[c->n] = '\0';
  return c->n == MAX_HEAD || strstr(c->buf, "\r\n\r\n") || strstr(c->buf, "\n\n");
}

/* The request target of a complete head, "GET /cb?code=... HTTP/1.1": the
 * middle of the request line, nothing after the line's end, no control
 * character, not empty. Sets *len; NULL when the head is not such a line. */
static const char *request_target(char *head, size_t n, size_t *len) {
  char *sp1, *sp2, *line_end = strchr(head, '\n');
  if (line_end != NULL) *line_end = '\0';
  sp1 = strchr(head, ' ');
  sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
  if (n == 0 || sp1 == NULL || sp2 == NULL || sp2 == sp1 + 1 ||
      has_control(sp1 + 1, (size_t)(sp2 - sp1 - 1)))
    return NULL;
  *len = (size_t)(sp2 - sp1 - 1);
  return sp1 + 1;
}

/* listener:accept(timeout) -> target | nil, code, message.
 * Reads request heads from up to MAX_PENDING connections at once, each for
 * at most CONN_READ_SECONDS; the first that is an HTTP request gives the
 * target and becomes the connection reply() answers. A connection that
 * sends nothing in time, or not HTTP, is dropped; the others are kept for
 * the next accept(). Waits in slices that give way to Ctrl-C. */
static int loopback_accept(lua_State *L) {
  listener *l = check_listener(L, 1);
  double timeout = (double)luaL_optnumber(L, 2, 120);
  double deadline = now_seconds() + timeout;
  ck_wait w;
  /* NaN would make poll() wait for ever: (int)NaN is no number of ms */
  luaL_argcheck(L, timeout == timeout, 2, "timeout must be a number of seconds, not NaN");
  drop_conn(l);
  ck_wait_begin(L, &w);
  for (;;) {
    struct pollfd p[MAX_PENDING + 1];
    int idx[MAX_PENDING + 1], np = 0, r;
    double now = now_seconds(), wake = deadline;
    if (now >= deadline) return ck_fail(L, "timeout", "no browser came back to the loopback redirect in time");
    p[np].fd = l->fd;
    p[np].events = POLLIN;
    idx[np++] = -1;
    for (int i = 0; i < MAX_PENDING; i++) {
      pending_conn *c = &l->pend[i];
      if (c->fd < 0) continue;
      if (now >= c->until) {
        drop_pending(c);
        continue;
      }
      if (c->until < wake) wake = c->until;
      p[np].fd = c->fd;
      p[np].events = POLLIN;
      idx[np++] = i;
    }
    {
      double ms = (wake - now) * 1000.0 + 1;
      r = poll(p, (nfds_t)np, ms < CK_WAIT_SLICE_MS ? (int)ms : CK_WAIT_SLICE_MS);
    }
    if (ck_wait_interrupted(&w)) {
      ck_wait_give_way(L, &w);
      return ck_fail(L, "cancelled", "interrupted");
    }
    if (r < 0 && errno != EINTR) return ck_fail(L, "listen", "poll: %s", strerror(errno));
    if (r <= 0) continue;
    for (int k = 1; k < np; k++) {
      pending_conn *c = &l->pend[idx[k]];
      const char *target;
      size_t tlen;
      if (!(p[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      r = read_pending(c);
      if (r == 0) continue;
      target = r > 0 ? request_target(c->buf, c->n, &tlen) : NULL;
      if (target == NULL) {
        drop_pending(c);
        continue;
      }
      lua_pushlstring(L, target, tlen);
      l->conn = c->fd; /* reply() answers it */
      c->fd = -1;
      drop_pending(c);
      return 1;
    }
    if (p[0].revents & POLLIN) take_conn(l, now_seconds());
  }
}

/* listener:reply(status, html): answers the pending connection and closes
 * it. */
static int loopback_reply(lua_State *L) {
  listener *l = check_listener(L, 1);
  lua_Integer status = luaL_checkinteger(L, 2);
  size_t blen;
  const char *body = luaL_checklstring(L, 3, &blen);
  if (l->conn >= 0) {
    const char *reason = status == 200 ? "OK" : status == 404 ? "Not Found" : "Bad Request";
    lua_pushfstring(L,
                    "HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=utf-8\r\n"
                    "Content-Length: %d\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
                    (int)status, reason, (int)blen);
    {
      size_t hl;
      const char *h = lua_tolstring(L, -1, &hl);
      if (send(l->conn, h, hl, MSG_NOSIGNAL) >= 0) send(l->conn, body, blen, MSG_NOSIGNAL);
    }
    lua_pop(L, 1);
  }
  drop_conn(l);
  return 0;
}

static int loopback_close(lua_State *L) {
  listener *l = (listener *)luaL_checkudata(L, 1, LISTENER_MT);
  drop_conn(l);
  for (int i = 0; i < MAX_PENDING; i++) drop_pending(&l->pend[i]);
  if (l->fd >= 0) close(l->fd);
  l->fd = -1;
  return 0;
}

static int loopback_index(lua_State *L) {
  listener *l = (listener *)luaL_checkudata(L, 1, LISTENER_MT);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "port") == 0) {
    lua_pushinteger(L, l->port);
    return 1;
  }
  luaL_getmetatable(L, LISTENER_MT);
  lua_getfield(L, -1, "methods");
  lua_getfield(L, -1, k);
  return 1;
}

/* core.sleep(seconds): in slices that give way to an interrupt
 * (interrupt.h), e.g. a retry's wait. */
static int core_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  double deadline, left;
  struct timespec now;
  ck_wait w;
  if (!(s > 0)) return 0;
  clock_gettime(CLOCK_MONOTONIC, &now);
  deadline = (double)now.tv_sec + (double)now.tv_nsec / 1e9 + (double)s;
  ck_wait_begin(L, &w);
  for (;;) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &now);
    left = deadline - ((double)now.tv_sec + (double)now.tv_nsec / 1e9);
    if (left <= 0) break;
    if (left > CK_WAIT_SLICE_MS / 1000.0) left = CK_WAIT_SLICE_MS / 1000.0;
    ts.tv_sec = 0;
    ts.tv_nsec = (long)(left * 1e9);
    nanosleep(&ts, NULL); /* a signal cuts it short: see below */
    if (ck_wait_interrupted(&w)) {
      ck_wait_give_way(L, &w);
      break;
    }
  }
  return 0;
}

static int core_now(lua_State *L) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec / 1e6);
  return 1;
}

void loopback_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"accept", loopback_accept},
                                     {"reply", loopback_reply},
                                     {"close", loopback_close},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", loopback_close},
                                  {"__close", loopback_close},
                                  {"__index", loopback_index},
                                  {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"listen", loopback_listen},
                                   {"sleep", core_sleep},
                                   {"now", core_now},
                                   {NULL, NULL}};
  compat_newclass(L, LISTENER_MT, NULL, meta);
  luaL_getmetatable(L, LISTENER_MT);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "methods");
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
}
