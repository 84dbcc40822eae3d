/*
 * http_async.c - transfer objects for non-blocking requests:
 *
 *   engine:start(spec) -> transfer | nil, code, message
 *   transfer:done() -> boolean
 *   transfer:result() -> response | nil, code, message   (drives until done)
 *   transfer:cancel()
 *
 *   engine:plain_starter(fail, cancelled, again) -> start(spec, request)
 *       start: a plain handle (a transfer that is the handle of a plain
 *       request: done(), result(), cancel() with the handle's meaning), or
 *       nil, code, message; see the end of this file
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
#define UV_REQUEST 4 /* a plain handle: its request (for its error) */
#define UV_ERROR 5   /* a plain handle: its error, once made */
#define PLAIN_MT "connkit.handle"

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
                    const http_spec *s, int nuv, int mti) {
  transfer *t;
  const char *bad = NULL;
  int top = lua_gettop(L);
  if (s == NULL) s = http_to_spec(L, si, &bad);
  if (s == NULL) return http_fail_attach(L, bad);
  if (lua_gettop(L) > top) si = lua_gettop(L); /* made from a table: pushed */
  t = (transfer *)lua_newuserdatauv(L, sizeof *t, nuv);
  memset(t, 0, sizeof *t);
  t->state = T_IDLE;
  if (mti) {
    lua_pushvalue(L, mti);
    lua_setmetatable(L, -2);
  } else {
    luaL_setmetatable(L, TRANSFER_MT);
  }
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
  return start_on(L, 1, e, 2, NULL, 3, 0);
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

/* ------------------------------------------------------------------ */
/* Plain handles                                                       */
/* ------------------------------------------------------------------ */

/* A plain request (static auth, nothing to follow or retry) is one
 * transfer and nothing else, so its handle (req:start(), see
 * connkit.http.async) is the transfer itself, with the handle's methods:
 * no Lua table and no Lua call per step on the hot path of event loops.
 * The methods share four upvalues: fail(request, code, message) -> err
 * (the request's error, attempts = 1), cancelled() -> err, the metatable
 * (a cheaper check than a lookup by name) and again(handle) (see
 * plain_result). A handle's outcome is
 * taken once the transfer is over and done() or result() is asked (so a
 * cancel() after that changes nothing, as with any handle). */

static transfer *check_plain(lua_State *L) {
  transfer *t = (transfer *)lua_touserdata(L, 1);
  int ok = t != NULL && lua_getmetatable(L, 1) &&
           lua_rawequal(L, -1, lua_upvalueindex(3));
  if (!ok) luaL_argerror(L, 1, "connkit.handle expected");
  lua_pop(L, 1);
  if (t->state == T_CLOSED) luaL_error(L, "attempt to use a closed handle");
  return t;
}

/* Pushes the handle's outcome when it has one (the reply, or nil and the
 * error): returns 1 or 2; 0 (nothing pushed) while it has none. */
static int push_outcome(lua_State *L) {
  if (lua_getiuservalue(L, 1, UV_RESULT) == LUA_TTABLE) return 1;
  lua_pop(L, 1);
  if (lua_getiuservalue(L, 1, UV_ERROR) == LUA_TTABLE) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  lua_pop(L, 1);
  return 0;
}

/* Takes the outcome of the finished transfer: the reply, or the error
 * made by fail(); pushes it as push_outcome does. */
static int take_outcome(lua_State *L, transfer *t) {
  int top = lua_gettop(L);
  if (http_push_reply(L, t) == 1) {
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, UV_RESULT);
    return 1;
  }
  /* nil, code, message -> fail(request, code, message) */
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_getiuservalue(L, 1, UV_REQUEST);
  lua_pushvalue(L, top + 2);
  lua_pushvalue(L, top + 3);
  lua_call(L, 3, 1);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 1, UV_ERROR);
  lua_replace(L, top + 2);
  lua_settop(L, top + 2);
  return 2;
}

/* handle:done() */
static int plain_done(lua_State *L) {
  transfer *t = check_plain(L);
  if (t->state == T_RUNNING) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (push_outcome(L) == 0) take_outcome(L, t);
  lua_pushboolean(L, 1);
  return 1;
}

/* handle:result(): waits (driving every transfer of the engine) until the
 * transfer is over. An interrupt the hook lets pass goes on waiting. */
static int plain_result(lua_State *L) {
  transfer *t = check_plain(L);
  int n = push_outcome(L);
  if (n > 0) return n;
  while (t->state == T_RUNNING) {
    ck_wait w;
    engine *e;
    lua_getiuservalue(L, 1, UV_ENGINE);
    e = (engine *)lua_touserdata(L, -1);
    http_engine_ready(L, e); /* forked? */
    if (t->state == T_RUNNING && http_wait(L, lua_gettop(L), e, t, &w)) {
      /* the interrupt hook runs in Lua: again(handle) is Lua calling
       * handle:result(), where the hook raises (or, if it lets the
       * interrupt pass, the wait goes on) */
      int base = lua_gettop(L);
      ck_wait_give_way(L, &w);
      lua_pushvalue(L, lua_upvalueindex(4));
      lua_pushvalue(L, 1);
      lua_call(L, 1, LUA_MULTRET);
      return lua_gettop(L) - base;
    }
    lua_pop(L, 1);
  }
  return take_outcome(L, t);
}

/* handle:cancel(): unless the handle has its outcome, the transfer stops
 * and the outcome is nil and cancelled(). */
static int plain_cancel(lua_State *L) {
  transfer *t = check_plain(L);
  if (push_outcome(L) > 0) return 0;
  if (t->state == T_RUNNING) {
    t->state = T_CANCELLED;
    http_detach(t);
    lua_getiuservalue(L, 1, UV_ENGINE);
    set_anchor(L, lua_gettop(L), t, 0);
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_call(L, 0, 1);
  lua_setiuservalue(L, 1, UV_ERROR);
  return 0;
}

static int plain_gc(lua_State *L) {
  transfer *t = (transfer *)lua_touserdata(L, 1);
  if (t == NULL || t->state == T_CLOSED) return 0;
  http_detach(t);
  http_release_buffers(t, 0);
  t->state = T_CLOSED;
  return 0;
}

/* start(spec, request): upvalues engine, spec metatable, handle metatable. */
static int plain_start(lua_State *L) {
  engine *e = (engine *)lua_touserdata(L, lua_upvalueindex(1));
  const http_spec *s = NULL;
  int n;
  if (e->closed) return luaL_error(L, "attempt to use a closed connkit engine");
  if (e->pid != ck_pid()) http_engine_ready(L, e);
  lua_settop(L, 2);
  if (lua_type(L, 1) == LUA_TUSERDATA && lua_getmetatable(L, 1)) {
    if (lua_rawequal(L, -1, lua_upvalueindex(2)))
      s = (const http_spec *)lua_touserdata(L, 1);
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  n = start_on(L, 3, e, 1, s, 5, lua_upvalueindex(3));
  if (n == 1) {
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, UV_REQUEST);
  }
  return n;
}

/* engine:plain_starter(fail, cancelled, again) -> start(spec, request) */
static int engine_plain_starter(lua_State *L) {
  static const luaL_Reg methods[] = {{"done", plain_done},
                                     {"result", plain_result},
                                     {"cancel", plain_cancel},
                                     {NULL, NULL}};
  http_check_engine(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  lua_settop(L, 4);
  luaL_newmetatable(L, PLAIN_MT); /* 5 */
  lua_pushcfunction(L, plain_gc);
  lua_setfield(L, 5, "__gc");
  lua_pushvalue(L, 5);
  lua_setfield(L, 5, "__index");
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 5);
  lua_pushvalue(L, 4);
  luaL_setfuncs(L, methods, 4);
  lua_pushvalue(L, 1);
  luaL_getmetatable(L, SPEC_MT);
  lua_pushvalue(L, 5);
  lua_pushcclosure(L, plain_start, 3);
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
  lua_pushcfunction(L, engine_plain_starter);
  lua_setfield(L, -2, "plain_starter");
  lua_pop(L, 2);
}
