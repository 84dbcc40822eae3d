/*
 * connkit.h - the one internal header: what the C parts share.
 * Only luaopen_connkit_core is exported; everything here is hidden.
 */
#ifndef CONNKIT_H
#define CONNKIT_H

#include <stddef.h>
#include <sys/types.h>

#include <lauxlib.h>
#include <lua.h>

#include "compat.h"

#if defined(__GNUC__)
#define CK_HIDDEN __attribute__((visibility("hidden")))
#else
#define CK_HIDDEN
#endif

/* Each part adds its functions to the module table on top of the stack and
 * registers its metatables. */
CK_HIDDEN void template_open(lua_State *L);
CK_HIDDEN void http_open(lua_State *L);
CK_HIDDEN void crypto_open(lua_State *L);
CK_HIDDEN void jws_open(lua_State *L);
CK_HIDDEN void sftp_open(lua_State *L);
CK_HIDDEN void lock_open(lua_State *L);
CK_HIDDEN void loopback_open(lua_State *L);
CK_HIDDEN void inflate_open(lua_State *L);
CK_HIDDEN void redis_open(lua_State *L);
CK_HIDDEN void tls_client_open(lua_State *L);

/* The id of this process (fork-safe state compares it; see core.c). */
CK_HIDDEN pid_t ck_pid(void);

/* Pushes nil, code, message and returns 3: the run-time failure convention of
 * the C functions. The Lua side turns (code, message) into an error table. */
CK_HIDDEN int ck_fail(lua_State *L, const char *code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* curl_global_init with connkit's memory functions (curl_mem.c); returns a
 * CURLcode. */
CK_HIDDEN int ck_curl_global_init(void);

/* Seconds to the milliseconds of libcurl and libssh2, for which 0 means
 * "no timeout": anything above 0 is rounded up (so 0.4 ms is 1 ms, never
 * "none"), and more than LONG_MAX-ish is capped at 2^31 - 1 ms (24 days).
 * NaN, 0 and less give 0: callers refuse NaN before they get here. */
static inline long ck_seconds_to_ms(double s) {
  double ms = s * 1000.0;
  long whole;
  if (!(ms > 0)) return 0;
  if (ms >= 2147483647.0) return 2147483647L;
  whole = (long)ms;
  return whole < ms ? whole + 1 : whole;
}

/* Writes "what: reason; reason" into buf from OpenSSL's error queue (library
 * reason strings only, never data) and clears the queue (crypto.c). */
CK_HIDDEN void ck_ssl_message(char *buf, size_t size, const char *what);

/* Overwrites a buffer that held a secret before it is freed. */
CK_HIDDEN void ck_cleanse(void *p, size_t n);

#endif /* CONNKIT_H */
