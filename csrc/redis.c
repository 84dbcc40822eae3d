/*
 * redis.c - a blocking Redis connection (hiredis) for the Redis token store
 * outside OpenResty:
 *
 *   core.redis_connect(host, port, timeout)     -> conn | nil, code, message
 *   core.redis_connect_unix(path, timeout)      -> conn | nil, code, message
 *   conn:command(arg, ...)  -> reply | nil, code, message
 *   conn:close() (also __gc, __close; idempotent), conn:usable()
 *
 * `timeout` (seconds, > 0) bounds the connect and every command. A reply is
 * a string (bulk or status), an integer, false (nil reply) or an array of
 * those; an error reply gives code "redis_error" with the server's message
 * and leaves the connection usable. Any other failure ("timeout", "io",
 * "closed", "protocol") closes the connection: a reply may be half read.
 * A connection used in a forked child is dropped there (the next command
 * reports "closed"; the store's client connects again).
 * Messages name the address, never a command's arguments (AUTH carries the
 * password, SET and EVALSHA carry sealed records).
 *
 * Only calls that hiredis 0.14 and 1.x both have are used.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "connkit.h"

#define REDIS_CLASS "connkit.redis"
#define REPLY_GUARD "connkit.redis.reply"
#define ADDR_MAX 300
#define MAX_ARGS 64
#define MAX_DEPTH 8

typedef struct {
  redisContext *ctx;   /* NULL when closed */
  pid_t pid;           /* the process that connected */
  char addr[ADDR_MAX]; /* host:port or unix:path, for messages */
} ck_redis;

static void redis_release(ck_redis *r) {
  if (r->ctx != NULL) {
    redisFree(r->ctx);
    r->ctx = NULL;
  }
}

/* A timeout in seconds as a timeval; raises for NaN, 0 or less. */
static struct timeval check_timeout(lua_State *L, int i) {
  double s = (double)luaL_checknumber(L, i);
  struct timeval tv;
  long ms;
  luaL_argcheck(L, s > 0, i, "timeout must be a positive number of seconds");
  ms = ck_seconds_to_ms(s);
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  return tv;
}

/* The code of a context error: a read or write that hit the socket
 * timeout shows as an I/O error with EAGAIN. */
static const char *context_code(const redisContext *c) {
  if (c->err == REDIS_ERR_IO &&
      (errno == EAGAIN || errno == EWOULDBLOCK || errno == ETIMEDOUT))
    return "timeout";
  if (c->err == REDIS_ERR_EOF) return "closed";
  if (c->err == REDIS_ERR_PROTOCOL) return "protocol";
  if (c->err == REDIS_ERR_IO && errno == ECONNREFUSED) return "connect";
  return "io";
}

/* Completes a connect: r (on the stack, owner of c from here on, so a Lua
 * error below frees c through __gc) gets the context c, or c is freed.
 * Returns 1 (r) or ck_fail's 3. */
static int finish_connect(lua_State *L, ck_redis *r, redisContext *c,
                          struct timeval tv) {
  int n;
  if (c == NULL) return ck_fail(L, "io", "redis %s: out of memory", r->addr);
  r->ctx = c;
  r->pid = ck_pid();
  if (c->err) {
    n = ck_fail(L, context_code(c), "redis %s: cannot connect: %s", r->addr,
                c->errstr);
    redis_release(r);
    return n;
  }
  if (redisSetTimeout(c, tv) != REDIS_OK) {
    redis_release(r);
    return ck_fail(L, "io", "redis %s: cannot set the timeout", r->addr);
  }
  return 1;
}

static ck_redis *new_redis(lua_State *L) {
  ck_redis *r = (ck_redis *)lua_newuserdatauv(L, sizeof *r, 0);
  r->ctx = NULL;
  r->pid = 0;
  r->addr[0] = '\0';
  luaL_setmetatable(L, REDIS_CLASS);
  return r;
}

/* core.redis_connect(host, port, timeout): a TCP connection. */
static int redis_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  struct timeval tv = check_timeout(L, 3);
  ck_redis *r;
  luaL_argcheck(L, port > 0 && port < 65536, 2, "port must be 1-65535");
  r = new_redis(L);
  snprintf(r->addr, sizeof r->addr, "%s:%d", host, (int)port);
  return finish_connect(L, r, redisConnectWithTimeout(host, (int)port, tv), tv);
}

/* core.redis_connect_unix(path, timeout): a Unix socket connection. */
static int redis_connect_unix(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct timeval tv = check_timeout(L, 2);
  ck_redis *r = new_redis(L);
  snprintf(r->addr, sizeof r->addr, "unix:%s", path);
  return finish_connect(L, r, redisConnectUnixWithTimeout(path, tv), tv);
}

/* A reply while it is turned into Lua values: held by a userdata whose
 * __gc frees it, so a Lua error (memory) mid-way leaks nothing. */
typedef struct {
  redisReply *rep;
} ck_reply_guard;

static int reply_guard__gc(lua_State *L) {
  ck_reply_guard *g = (ck_reply_guard *)luaL_checkudata(L, 1, REPLY_GUARD);
  if (g->rep != NULL) {
    freeReplyObject(g->rep);
    g->rep = NULL;
  }
  return 0;
}

/* The connection at i; in a forked child, a connection the parent made is
 * dropped (its socket is the parent's: two processes on one stream would
 * read each other's replies). */
static ck_redis *check_redis(lua_State *L, int i) {
  ck_redis *r = (ck_redis *)luaL_checkudata(L, i, REDIS_CLASS);
  if (r->ctx != NULL && r->pid != ck_pid()) redis_release(r);
  return r;
}

/* Pushes a reply (not an error reply at the top: the caller handles that).
 * Returns 0, or -1 for a type this client does not speak (RESP3). */
static int push_reply(lua_State *L, const redisReply *rep, int depth) {
  size_t i;
  switch (rep->type) {
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
  case REDIS_REPLY_ERROR: /* inside an array: its text */
    lua_pushlstring(L, rep->str, (size_t)rep->len);
    return 0;
  case REDIS_REPLY_INTEGER:
    lua_pushinteger(L, (lua_Integer)rep->integer);
    return 0;
  case REDIS_REPLY_NIL:
    lua_pushboolean(L, 0);
    return 0;
  case REDIS_REPLY_ARRAY:
    if (depth >= MAX_DEPTH) return -1;
    luaL_checkstack(L, 4, "redis reply");
    lua_createtable(L, (int)rep->elements, 0);
    for (i = 0; i < rep->elements; i++) {
      if (push_reply(L, rep->element[i], depth + 1) != 0) {
        lua_pop(L, 1);
        return -1;
      }
      lua_rawseti(L, -2, (lua_Integer)(i + 1));
    }
    return 0;
  default:
    return -1;
  }
}

/* conn:command(arg, ...): strings and numbers, sent as one command. */
static int redis_command(lua_State *L) {
  ck_redis *r = check_redis(L, 1);
  int argc = lua_gettop(L) - 1, i;
  const char *argv[MAX_ARGS];
  size_t lens[MAX_ARGS];
  redisReply *rep;
  ck_reply_guard *guard;
  const char *code;
  int n;
  luaL_argcheck(L, argc >= 1 && argc <= MAX_ARGS, 2,
                "a command of 1 to 64 words");
  for (i = 0; i < argc; i++) {
    luaL_argcheck(L,
                  lua_type(L, i + 2) == LUA_TSTRING ||
                      lua_type(L, i + 2) == LUA_TNUMBER,
                  i + 2, "command words must be strings or numbers");
    argv[i] = lua_tolstring(L, i + 2, &lens[i]);
  }
  if (r->ctx == NULL)
    return ck_fail(L, "closed", "redis %s: the connection is closed", r->addr);
  guard = (ck_reply_guard *)lua_newuserdatauv(L, sizeof *guard, 0);
  guard->rep = NULL;
  luaL_setmetatable(L, REPLY_GUARD);
  errno = 0;
  rep = (redisReply *)redisCommandArgv(r->ctx, argc, argv, lens);
  if (rep == NULL) {
    code = context_code(r->ctx);
    n = ck_fail(L, code, "redis %s: %s", r->addr,
                strcmp(code, "timeout") == 0 ? "no reply within the timeout"
                                             : r->ctx->errstr);
    redis_release(r);
    return n;
  }
  guard->rep = rep;
  if (rep->type == REDIS_REPLY_ERROR) {
    n = ck_fail(L, "redis_error", "redis %s: %.*s", r->addr, (int)rep->len,
                rep->str);
  } else if (push_reply(L, rep, 0) != 0) {
    redis_release(r);
    n = ck_fail(L, "protocol", "redis %s: a reply of a type not spoken here",
                r->addr);
  } else {
    n = 1;
  }
  guard->rep = NULL;
  freeReplyObject(rep);
  return n;
}

/* conn:usable() -> whether commands can still be sent. */
static int redis_usable(lua_State *L) {
  lua_pushboolean(L, check_redis(L, 1)->ctx != NULL);
  return 1;
}

/* conn:close() -> true; idempotent; also __gc and __close. */
static int redis_close(lua_State *L) {
  redis_release(check_redis(L, 1));
  lua_pushboolean(L, 1);
  return 1;
}

static int redis__tostring(lua_State *L) {
  ck_redis *r = check_redis(L, 1);
  lua_pushfstring(L, "connkit.redis(%s%s)", r->addr,
                  r->ctx == NULL ? ", closed" : "");
  return 1;
}

/* Adds the Redis functions to the module table on top of the stack and
 * registers the connection class. */
void redis_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"redis_connect", redis_connect},
      {"redis_connect_unix", redis_connect_unix},
      {NULL, NULL},
  };
  static const luaL_Reg methods[] = {
      {"command", redis_command},
      {"usable", redis_usable},
      {"close", redis_close},
      {NULL, NULL},
  };
  static const luaL_Reg metamethods[] = {
      {"__gc", redis_close},
      {"__close", redis_close},
      {"__tostring", redis__tostring},
      {NULL, NULL},
  };
  static const luaL_Reg guard_metamethods[] = {
      {"__gc", reply_guard__gc},
      {NULL, NULL},
  };
  compat_newclass(L, REDIS_CLASS, methods, metamethods);
  compat_newclass(L, REPLY_GUARD, NULL, guard_metamethods);
  luaL_setfuncs(L, funcs, 0);
}
