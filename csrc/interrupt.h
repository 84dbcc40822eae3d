/*
 * interrupt.h - blocking calls that give way to an interrupt (Ctrl-C).
 *
 * The stock interpreters (lua.c, luajit.c) answer SIGINT by setting a hook
 * that runs at the next instruction and raises "interrupted!"; a C function
 * that waits never reaches a next instruction. So every blocking wait of
 * connkit waits in slices of at most CK_WAIT_SLICE_MS and, between slices,
 * asks ck_wait_interrupted() whether such a hook was set since the wait
 * began. If so it stops its own work (cancels its transfers) and returns
 * through ck_wait_give_way(), which lets the hook raise. connkit installs no
 * signal handler: where SIGINT's handler sets no hook (SIG_DFL in an
 * embedded host, SIG_IGN in nginx) nothing changes.
 */
#ifndef CONNKIT_INTERRUPT_H
#define CONNKIT_INTERRUPT_H

#include "connkit.h"

#define CK_WAIT_SLICE_MS 100

typedef struct {
  lua_State *L;
  lua_State *main; /* the main thread when L is a coroutine (5.2+), or NULL */
  lua_Hook hook;   /* L's hook when the wait began */
  lua_Hook main_hook;
} ck_wait;

/* Notes the hooks of L (and of the main thread) as the wait begins. */
CK_HIDDEN void ck_wait_begin(lua_State *L, ck_wait *w);

/* True when an interrupt hook (a count hook for the very next instruction,
 * what lua.c and luajit.c set on SIGINT) was set since ck_wait_begin. */
CK_HIDDEN int ck_wait_interrupted(const ck_wait *w);

/* Called once the interrupted work is cleaned up: makes sure the hook is
 * on the running thread (lua.c sets it on the main thread, which a
 * coroutine is not), so that it raises "interrupted!" as the C function
 * returns, whatever that returns. */
CK_HIDDEN void ck_wait_give_way(lua_State *L, const ck_wait *w);

/* Milliseconds on a monotonic clock, for deadlines of sliced waits. */
CK_HIDDEN long long ck_now_ms(void);

#endif /* CONNKIT_INTERRUPT_H */
