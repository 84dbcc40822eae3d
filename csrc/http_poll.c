/*
 * http_poll.c - the pollable engine, for hosts that run an event loop
 * (luv, Neovim's vim.loop, cqueues):
 *
 *   engine:pollfd() -> fd       readable when a socket of the engine's
 *                               transfers has something to do
 *   engine:timeout() -> seconds | nil   until engine:poll(0) must run for
 *                               curl's timers (the host uses both)
 *
 * Until pollfd() is first called the engine runs on curl_multi_perform and
 * curl_multi_poll with no callbacks, the cheapest for blocking requests and
 * batches. libcurl 7.88 calls its socket callback only from the socket API
 * (curl_multi_socket_action), never from curl_multi_perform, so from the
 * first pollfd() on the engine is event driven instead: the socket callback
 * keeps the sockets curl waits for in an epoll set, the timer callback
 * notes when curl's timer is due, and a step (http_poll_run) hands the
 * ready sockets and a due timer to curl_multi_socket_action. Blocking
 * requests and batches then wait on the epoll set too (bounded by curl's
 * timer), so the set never goes stale. Curl's timer is not in the set (a
 * timerfd cost a syscall per change, several per request): the host has to
 * ask timeout() anyway, for connkit's own timed work. Linux only (epoll).
 */
/* curl_multi_socket_all: once, to hand over transfers already running */
#define CURL_DISABLE_DEPRECATION

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "http.h"

#define EVENTS_MAX 64

struct http_poller {
  int epfd;
  int64_t timer_at; /* CLOCK_MONOTONIC ns when curl's timer is due; -1: none */
};

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CURLMOPT_TIMERFUNCTION: ms < 0 deletes the timer, 0 means now. */
static int on_timer(CURLM *multi, long ms, void *ud) {
  http_poller *p = (http_poller *)ud;
  (void)multi;
  p->timer_at = ms < 0 ? -1 : mono_ns() + (int64_t)ms * 1000000;
  return 0;
}

/* CURLMOPT_SOCKETFUNCTION: mirrors what curl waits for on socket s in the
 * epoll set. An error aborts every transfer (better than a silent hang). */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *ud,
                     void *sp) {
  http_poller *p = (http_poller *)ud;
  struct epoll_event ev;
  (void)easy;
  (void)sp;
  if (what == CURL_POLL_REMOVE) {
    /* the socket may be closed already, which removed it */
    epoll_ctl(p->epfd, EPOLL_CTL_DEL, s, NULL);
    return 0;
  }
  memset(&ev, 0, sizeof ev);
  ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) |
              ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
  ev.data.fd = s;
  if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, s, &ev) == 0) return 0;
  if (errno == EEXIST && epoll_ctl(p->epfd, EPOLL_CTL_MOD, s, &ev) == 0)
    return 0;
  return -1;
}

/* Runs what is due: waits up to wait_ms (0: not at all; never past curl's
 * timer) for the epoll set, hands each ready socket to curl, then curl's
 * timer if it is due. The caller reads the completion messages. */
void http_poll_run(engine *e, int wait_ms) {
  http_poller *p = e->poller;
  struct epoll_event ev[EVENTS_MAX];
  int n, i, still;
  if (wait_ms > 0 && p->timer_at >= 0) {
    int64_t left = p->timer_at - mono_ns();
    if (left < (int64_t)wait_ms * 1000000)
      wait_ms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
  }
  n = epoll_wait(p->epfd, ev, EVENTS_MAX, wait_ms);
  for (i = 0; i < n; i++) {
    int mask = 0;
    if (ev[i].events & EPOLLIN) mask |= CURL_CSELECT_IN;
    if (ev[i].events & EPOLLOUT) mask |= CURL_CSELECT_OUT;
    if (ev[i].events & (EPOLLERR | EPOLLHUP)) mask |= CURL_CSELECT_ERR;
    curl_multi_socket_action(e->multi, ev[i].data.fd, mask, &still);
  }
  if (p->timer_at >= 0 && mono_ns() >= p->timer_at) {
    p->timer_at = -1; /* on_timer sets the next one */
    curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &still);
  }
}

/* Closes the poller (engine __gc); the callbacks go first, so closing the
 * multi does not call into a freed poller. */
void http_poll_close(engine *e) {
  http_poller *p = e->poller;
  if (p == NULL) return;
  curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, NULL);
  curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, NULL);
  close(p->epfd);
  free(p);
  e->poller = NULL;
}

/* In a forked child (http_engine_ready): the parent's poller is dropped
 * without a word to its multi (which stays the parent's); the child's own
 * engine is polled again only after pollfd() is called there. */
void http_poll_forget(engine *e) {
  http_poller *p = e->poller;
  if (p == NULL) return;
  close(p->epfd);
  free(p);
  e->poller = NULL;
}

/* engine:pollfd() -> fd: the epoll set, made on the first call (the engine
 * turns event driven then; see the top of this file). */
static int engine_pollfd(lua_State *L) {
  engine *e = http_check_engine(L, 1);
  http_poller *p = e->poller;
  if (p == NULL) {
    int still;
    p = (http_poller *)calloc(1, sizeof *p);
    if (p == NULL) return luaL_error(L, "connkit.pollfd: out of memory");
    p->timer_at = -1;
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0) {
      int err = errno;
      free(p);
      return luaL_error(L, "connkit.pollfd: %s", strerror(err));
    }
    e->poller = p;
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, (void *)p);
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, (void *)p);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    if (e->nrunning > 0) {
      /* transfers started before: the socket API has not seen their
       * sockets yet. This runs them once and reports every socket; what
       * finished meanwhile is read on the next step, so that is due now. */
      curl_multi_socket_all(e->multi, &still);
      p->timer_at = mono_ns();
    }
  }
  lua_pushinteger(L, p->epfd);
  return 1;
}

/* engine:timeout() -> seconds until engine:poll(0) must run at the latest
 * (0: now), or nil when no transfer is in flight or none waits for a time
 * (only for sockets, which pollfd() covers). */
static int engine_timeout(lua_State *L) {
  engine *e = http_check_engine(L, 1);
  long ms = -1;
  if (e->nrunning == 0) {
    lua_pushnil(L);
    return 1;
  }
  if (e->poller != NULL) {
    if (e->poller->timer_at >= 0) {
      int64_t left = e->poller->timer_at - mono_ns();
      /* rounded up: a host's timer that fires early only wakes it twice */
      ms = left <= 0 ? 0 : (long)((left + 999999) / 1000000);
    }
  } else {
    curl_multi_timeout(e->multi, &ms);
  }
  if (ms < 0) lua_pushnil(L);
  else lua_pushnumber(L, (lua_Number)ms / 1000);
  return 1;
}

void http_poll_open(lua_State *L) {
  luaL_getmetatable(L, ENGINE_MT);
  lua_getfield(L, -1, "__index");
  lua_pushcfunction(L, engine_pollfd);
  lua_setfield(L, -2, "pollfd");
  lua_pushcfunction(L, engine_timeout);
  lua_setfield(L, -2, "timeout");
  lua_pop(L, 2);
}
