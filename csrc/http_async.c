/*
 * http_async.c - transfer objects for non-blocking requests:
 *
 *   engine:start(spec) -> transfer | nil, code, message
 *   transfer:done() -> boolean
 *   transfer:result() -> response | nil, code, message   (drives until done)
 *   transfer:cancel()
 *
 * A running transfer is anchored in the engine (it must not be collected
 * while curl writes into it) and keeps its spec (and so the body string) and
 * the engine alive through its user values.
 */
#include <string.h>
#include <unistd.h>

#include "http.h"

#define UV_SPEC 1
#define UV_ENGINE 2
#define UV_RESULT 3 /* the response table, once built */

static transfer *check_transfer(lua_State *L, int i) {
  transfer *t = (transfer *)luaL_checkudata(L, i, TRANSFER_MT);
  if (t->state == T_CLOSED) luaL_error(L, "attempt to use a closed transfer");
  return t;
}

static void set_anchor(lua_State *L, int ei, transfer *t, int ti) {
  lua_getiuservalue(L, ei, UV_RUNNING);
  lua_pushlightuserdata(L, t);
  if (ti) lua_pushvalue(L, ti);
  else lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  t->anchored = ti != 0;
}

/* Starts a transfer of the engine at ei for the spec (or spec table) at si;
 * s: the spec there when the caller knows it is one, else NULL. */
static int start_on(lua_State *L, int ei, engine *e, int si,
                    const http_spec *s) {
  transfer *t;
  const char *bad = NULL;
  int top = lua_gettop(L);
  if (s == NULL) s = http_to_spec(L, si, &bad);
  if (s == NULL) return http_fail_attach(L, bad);
  if (lua_gettop(L) > top) si = lua_gettop(L); /* made from a table: pushed */
  t = (transfer *)lua_newuserdatauv(L, sizeof *t, 3);
  memset(t, 0, sizeof *t);
  t->state = T_IDLE;
  luaL_setmetatable(L, TRANSFER_MT);
  lua_pushvalue(L, si);
  lua_setiuservalue(L, -2, UV_SPEC);
  lua_pushvalue(L, ei);
  lua_setiuservalue(L, -2, UV_ENGINE);
  bad = http_attach(e, s, t);
  if (bad != NULL) return http_fail_attach(L, bad);
  set_anchor(L, ei, t, lua_gettop(L));
  return 1;
}

/* engine:start(spec | spec table) */
static int engine_start(lua_State *L) {
  engine *e = http_check_engine(L, 1);
  return start_on(L, 1, e, 2, NULL);
}

/* The same as a closure over the engine and the spec metatable, for the
 * plain handles' path (see bound_perform in http.c). */
static int bound_start(lua_State *L) {
  engine *e = (engine *)lua_touserdata(L, lua_upvalueindex(1));
  const http_spec *s = NULL;
  if (e->closed) return luaL_error(L, "attempt to use a closed connkit engine");
  if (e->pid != getpid()) http_engine_ready(L, e);
  lua_settop(L, 1);
  if (lua_type(L, 1) == LUA_TUSERDATA && lua_getmetatable(L, 1)) {
    if (lua_rawequal(L, -1, lua_upvalueindex(2)))
      s = (const http_spec *)lua_touserdata(L, 1);
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  return start_on(L, 2, e, 1, s);
}

/* engine:starter() -> start(spec): engine:start bound to the engine. */
static int engine_starter(lua_State *L) {
  http_check_engine(L, 1);
  lua_settop(L, 1);
  luaL_getmetatable(L, SPEC_MT);
  lua_pushcclosure(L, bound_start, 2);
  return 1;
}

static int transfer_done(lua_State *L) {
  transfer *t = check_transfer(L, 1);
  lua_pushboolean(L, t->state != T_RUNNING);
  return 1;
}

/* transfer:result(): waits (driving every transfer of the engine) until
 * this one is done, then its response (built once) or nil, code, message.
 * An interrupt ends the wait, not the transfer: it gives way to the
 * interrupt hook and the transfer runs on. */
static int transfer_result(lua_State *L) {
  transfer *t = check_transfer(L, 1);
  if (t->state == T_RUNNING) {
    ck_wait w;
    int ei;
    lua_getiuservalue(L, 1, UV_ENGINE);
    ei = lua_gettop(L);
    http_engine_ready(L, (engine *)lua_touserdata(L, ei)); /* forked? */
    if (t->state == T_RUNNING && http_wait(L, ei, (engine *)lua_touserdata(L, ei), t, &w)) {
      ck_wait_give_way(L, &w);
      return ck_fail(L, "cancelled", "interrupted");
    }
    lua_pop(L, 1);
  }
  if (lua_getiuservalue(L, 1, UV_RESULT) == LUA_TTABLE) return 1;
  lua_pop(L, 1);
  if (http_push_reply(L, t) != 1) return 3;
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 1, UV_RESULT);
  return 1;
}

/* transfer:cancel(): its result is then nil, "cancelled". */
static int transfer_cancel(lua_State *L) {
  transfer *t = check_transfer(L, 1);
  if (t->state == T_RUNNING) {
    t->state = T_CANCELLED;
    http_detach(t);
    lua_getiuservalue(L, 1, UV_ENGINE);
    set_anchor(L, lua_gettop(L), t, 0);
    lua_pop(L, 1);
  }
  return 0;
}

static int transfer_gc(lua_State *L) {
  transfer *t = (transfer *)luaL_checkudata(L, 1, TRANSFER_MT);
  if (t->state == T_CLOSED) return 0;
  http_detach(t);
  http_release_buffers(t, 0);
  t->state = T_CLOSED;
  return 0;
}

static int transfer_tostring(lua_State *L) {
  transfer *t = (transfer *)luaL_checkudata(L, 1, TRANSFER_MT);
  static const char *const names[] = {"idle", "running", "done", "cancelled",
                                      "closed"};
  lua_pushfstring(L, "connkit.transfer (%s)", names[t->state]);
  return 1;
}

void http_async_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"done", transfer_done},
                                     {"result", transfer_result},
                                     {"cancel", transfer_cancel},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", transfer_gc},
                                  {"__tostring", transfer_tostring},
                                  {NULL, NULL}};
  compat_newclass(L, TRANSFER_MT, methods, meta);
  /* engine:start lives with the engine's methods */
  luaL_getmetatable(L, ENGINE_MT);
  lua_getfield(L, -1, "__index");
  lua_pushcfunction(L, engine_start);
  lua_setfield(L, -2, "start");
  lua_pushcfunction(L, engine_starter);
  lua_setfield(L, -2, "starter");
  lua_pop(L, 2);
}
