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
 * Connections are plain fds kept in the listener (one at a time), so nothing
 * leaks if the caller forgets to reply: close() and __gc close them.
 */
#include <errno.h>
#include <netinet/in.h>
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

typedef struct {
  int fd;   /* listening socket, -1 when closed */
  int conn; /* the accepted connection awaiting a reply, or -1 */
  int port;
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
  l->fd = l->conn = -1;
  l->port = 0;
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

/* Waits until fd is readable or the deadline passes; 1 ready, 0 timeout. */
static int wait_readable(int fd, double deadline) {
  for (;;) {
    struct pollfd p;
    double left = deadline - now_seconds();
    int r;
    if (left <= 0) return 0;
    p.fd = fd;
    p.events = POLLIN;
    r = poll(&p, 1, (int)(left * 1000.0) + 1);
    if (r > 0) return 1;
    if (r == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

static void drop_conn(listener *l) {
  if (l->conn >= 0) close(l->conn);
  l->conn = -1;
}

/* True when s (n bytes) holds a control character (CR and NUL included). */
static int has_control(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f) return 1;
  return 0;
}

/* listener:accept(timeout) -> target | nil, code, message.
 * Reads one request head; a connection that sends nothing in time, or not
 * HTTP, is dropped and the wait goes on until the overall deadline. */
static int loopback_accept(lua_State *L) {
  listener *l = check_listener(L, 1);
  double timeout = (double)luaL_optnumber(L, 2, 120);
  double deadline = now_seconds() + timeout;
  char head[MAX_HEAD + 1];
  /* NaN would make poll() wait for ever: (int)NaN is no number of ms */
  luaL_argcheck(L, timeout == timeout, 2, "timeout must be a number of seconds, not NaN");
  drop_conn(l);
  for (;;) {
    size_t n = 0;
    char *sp1, *sp2, *line_end;
    int r = wait_readable(l->fd, deadline);
    if (r == 0) return ck_fail(L, "timeout", "no browser came back to the loopback redirect in time");
    if (r < 0) return ck_fail(L, "listen", "poll: %s", strerror(errno));
    l->conn = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    if (l->conn < 0) continue;
    while (n < MAX_HEAD) {
      ssize_t got;
      double d = now_seconds() + 5 < deadline ? now_seconds() + 5 : deadline;
      if (wait_readable(l->conn, d) <= 0) break;
      got = recv(l->conn, head + n, MAX_HEAD - n, 0);
      if (got < 0 && errno == EINTR) continue; /* a signal: the request goes on */
      if (got <= 0) break;
      n += (size_t)got;
      head[n] = '\0';
      if (strstr(head, "\r\n\r\n") || strstr(head, "\n\n")) break;
    }
    head[n] = '\0';
    /* the target is the middle of the request line, "GET /cb?code=... HTTP/1.1":
     * nothing after the line's end, no control character, not empty */
    line_end = strchr(head, '\n');
    if (line_end != NULL) *line_end = '\0';
    sp1 = strchr(head, ' ');
    sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (n == 0 || sp1 == NULL || sp2 == NULL || sp2 == sp1 + 1 ||
        has_control(sp1 + 1, (size_t)(sp2 - sp1 - 1))) {
      drop_conn(l);
      continue;
    }
    lua_pushlstring(L, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    ck_cleanse(head, n); /* it held an authorization code */
    return 1;
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
