/*
 * compat.h - every Lua version difference lives here, nowhere else.
 *
 * The code is written against the Lua 5.4 API. Included after lua.h and
 * lauxlib.h, this header supplies what 5.1/LuaJIT, 5.2 and 5.3 lack.
 * User values: 5.4 has n user values per userdata; older versions have one
 * (a table in 5.1, any value in 5.2/5.3). There we keep a table in that one
 * slot and store user value n at index n of it.
 */
#ifndef CONNKIT_COMPAT_H
#define CONNKIT_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM < 502
/* Lua 5.1 and LuaJIT */
#ifndef LUA_OK
#define LUA_OK 0
#endif
#define lua_rawlen(L, i) lua_objlen((L), (i))

static inline int lua_absindex(lua_State *L, int idx) {
  return (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
}

static inline void compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#undef luaL_setfuncs
#define luaL_setfuncs(L, l, n) compat_setfuncs((L), (l), (n))

static inline void *compat_testudata(lua_State *L, int i, const char *tname) {
  void *p = lua_touserdata(L, i);
  if (p == NULL || !lua_getmetatable(L, i)) return NULL;
  luaL_getmetatable(L, tname);
  if (!lua_rawequal(L, -1, -2)) p = NULL;
  lua_pop(L, 2);
  return p;
}
#undef luaL_testudata
#define luaL_testudata(L, i, t) compat_testudata((L), (i), (t))

static inline void compat_setmetatable(lua_State *L, const char *tname) {
  luaL_getmetatable(L, tname);
  lua_setmetatable(L, -2);
}
#undef luaL_setmetatable
#define luaL_setmetatable(L, t) compat_setmetatable((L), (t))

#define lua_getuservalue(L, i) lua_getfenv((L), (i))
#define lua_setuservalue(L, i) lua_setfenv((L), (i))
#endif /* < 502 */

/* True only for a value of the integer subtype (never before 5.3, where
 * every number is a double). */
#if LUA_VERSION_NUM >= 503
#define compat_is_integer_subtype(L, i) lua_isinteger((L), (i))
#else
#define compat_is_integer_subtype(L, i) ((void)(L), (void)(i), 0)
#endif

#if LUA_VERSION_NUM < 503
static inline int lua_isinteger(lua_State *L, int i) {
  if (lua_type(L, i) == LUA_TNUMBER) {
    lua_Number n = lua_tonumber(L, i);
    return n == (lua_Number)(long long)n;
  }
  return 0;
}
#endif

#if LUA_VERSION_NUM < 504
/* n user values emulated with a table in the single user value slot. */
static inline void *lua_newuserdatauv(lua_State *L, size_t size, int nuv) {
  void *p = lua_newuserdata(L, size);
  lua_createtable(L, nuv, 0);
  lua_setuservalue(L, -2);
  return p;
}

static inline int lua_getiuservalue(lua_State *L, int idx, int n) {
  lua_getuservalue(L, idx);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return LUA_TNONE;
  }
  lua_rawgeti(L, -1, n);
  lua_remove(L, -2);
  return lua_type(L, -1);
}

/* Pops the value on top and stores it as user value n; returns 0 on failure. */
static inline int lua_setiuservalue(lua_State *L, int idx, int n) {
  idx = lua_absindex(L, idx);
  lua_getuservalue(L, idx);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 2);
    return 0;
  }
  lua_insert(L, -2);
  lua_rawseti(L, -2, n);
  lua_pop(L, 1);
  return 1;
}
#endif /* < 504 */

/* The main thread of L's state, or NULL where the API cannot tell (5.1:
 * there LuaJIT's hooks are global anyway). */
static inline lua_State *compat_mainthread(lua_State *L) {
#if LUA_VERSION_NUM >= 502
  lua_State *m;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  m = lua_tothread(L, -1);
  lua_pop(L, 1);
  return m;
#else
  (void)L;
  return NULL;
#endif
}

/* Pushes a fresh metatable named tname with methods in __index (and the given
 * metamethods), leaves nothing on the stack. Same on every version. */
static inline void compat_newclass(lua_State *L, const char *tname,
                                   const luaL_Reg *methods,
                                   const luaL_Reg *metamethods) {
  luaL_newmetatable(L, tname);
  if (metamethods != NULL) luaL_setfuncs(L, metamethods, 0);
  if (methods != NULL) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

#endif /* CONNKIT_COMPAT_H */
