/*
 * interrupt.c - blocking calls that give way to an interrupt (see
 * interrupt.h for the why).
 *
 * How the stock interpreters answer Ctrl-C: their SIGINT handler calls
 * lua_sethook(main thread, stop, CALL|RET|COUNT(|LINE), 1), and the hook
 * raises "interrupted!" at the next instruction (LuaJIT's hooks are global,
 * PUC Lua's belong to one thread). Such a handler also cuts short the
 * poll() a wait is in (EINTR), so a sliced wait sees the hook at once, or
 * at the latest when its slice ends. Reading the hook from C is all it
 * takes: connkit keeps no state of its own about signals and leaves SIGINT's
 * disposition alone.
 */
#include <time.h>

#include "interrupt.h"

void ck_wait_begin(lua_State *L, ck_wait *w) {
  w->L = L;
  w->hook = lua_gethook(L);
  w->main = NULL;
  w->main_hook = NULL;
  if (!lua_pushthread(L)) { /* a coroutine: the interpreter hooks the main one */
    w->main = compat_mainthread(L);
    if (w->main != NULL) w->main_hook = lua_gethook(w->main);
  }
  lua_pop(L, 1);
}

/* Whether T has a hook other than `before` that runs at the very next
 * instruction: a request to stop, not a debugger's or profiler's hook. */
static int stop_hook_set(lua_State *T, lua_Hook before) {
  lua_Hook h = lua_gethook(T);
  return h != NULL && h != before && (lua_gethookmask(T) & LUA_MASKCOUNT) &&
         lua_gethookcount(T) == 1;
}

int ck_wait_interrupted(const ck_wait *w) {
  return stop_hook_set(w->L, w->hook) ||
         (w->main != NULL && stop_hook_set(w->main, w->main_hook));
}

void ck_wait_give_way(lua_State *L, const ck_wait *w) {
  lua_State *m = w->main;
  if (stop_hook_set(L, w->hook) || m == NULL || !stop_hook_set(m, w->main_hook))
    return;
  /* the interpreter hooked the main thread, but a coroutine runs: the hook
   * moves to the coroutine, which would otherwise run on until it yields,
   * and the main thread is left as the hook would leave it (no hook) */
  lua_sethook(L, lua_gethook(m), lua_gethookmask(m), lua_gethookcount(m));
  lua_sethook(m, NULL, 0, 0);
}

long long ck_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
