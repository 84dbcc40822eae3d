/*
 * core.c - luaopen_connkit_core: the module table, one-time library init.
 *
 * curl_global_init and libssh2_init are not thread-safe and must run once per
 * process, so they sit behind pthread_once; everything else is per lua_State.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libssh2.h>
#include <openssl/crypto.h>

#include "connkit.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_status; /* written once under init_once, then only read */

/* The process id, kept up to date by a fork handler rather than asked of
 * the kernel on every transfer (glibc's getpid is a system call, and the
 * engines check it on each use for fork safety). glibc drops the handler
 * when the module is unloaded. */
static volatile pid_t process_id;

static void after_fork_in_child(void) { process_id = getpid(); }

pid_t ck_pid(void) { return process_id; }

static void global_init(void) {
  process_id = getpid();
  if (pthread_atfork(NULL, NULL, after_fork_in_child) != 0) {
    init_status = 3;
    return;
  }
  if (ck_curl_global_init() != CURLE_OK) {
    init_status = 1;
    return;
  }
  if (libssh2_init(0) != 0) init_status = 2;
}

/* The message is never cut: the Lua side scrubs secrets from it, and a
 * secret cut in two would not be found (a long one goes in a userdata left
 * below the three results). */
int ck_fail(lua_State *L, const char *code, const char *fmt, ...) {
  char small[512];
  char *msg = small;
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n >= (int)sizeof small) {
    msg = (char *)lua_newuserdatauv(L, (size_t)n + 1, 0);
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    va_end(ap);
  }
  lua_pushnil(L);
  lua_pushstring(L, code);
  lua_pushstring(L, msg);
  return 3;
}

void ck_cleanse(void *p, size_t n) {
  if (p != NULL && n > 0) OPENSSL_cleanse(p, n);
}

__attribute__((visibility("default"))) int luaopen_connkit_core(lua_State *L);

int luaopen_connkit_core(lua_State *L) {
  pthread_once(&init_once, global_init);
  if (init_status == 1) return luaL_error(L, "connkit: curl_global_init failed");
  if (init_status == 2) return luaL_error(L, "connkit: libssh2_init failed");
  if (init_status == 3) return luaL_error(L, "connkit: pthread_atfork failed");

  lua_newtable(L);
  template_open(L);
  http_open(L);
  crypto_open(L);
  jws_open(L);
  sftp_open(L);
  lock_open(L);
  loopback_open(L);
  inflate_open(L);
  redis_open(L);
  tls_client_open(L);

  lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->version);
  lua_setfield(L, -2, "curl_version");
  lua_pushstring(L, LIBSSH2_VERSION);
  lua_setfield(L, -2, "libssh2_version");
  return 1;
}
