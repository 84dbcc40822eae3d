/*
 * driver.c - the libFuzzer entry point shared by every connkit fuzz target.
 *
 * Each target is this file, built with -DFUZZ_TARGET=\"name\", linked with
 * all of csrc/ (compiled with the same sanitizers) and liblua. It opens one
 * lua_State with connkit.core preloaded and lua/ on package.path, runs
 * fuzz/<name>.lua once, and calls the function that script returns with each
 * input as a Lua string. The script calls the functions Lua code calls
 * (core.template, core.open, listener:accept, url.join, ...), so the targets
 * need no hook in the production code; a Lua error from the script is an
 * oracle failure and aborts (libFuzzer saves the input).
 *
 * A line hook feeds the Lua lines run (as pairs of consecutive lines) to
 * libFuzzer as extra coverage counters: the pure-Lua targets (URL joining,
 * token replies) get coverage guidance from their Lua code too.
 *
 * The scripts get a table `fuzz` with reference implementations the C side
 * has: fuzz.curl_url (libcurl's own URL parser) and fuzz.knownhost
 * (libssh2's own known_hosts parser), and fuzz.send (a client connection
 * to a loopback port).
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libssh2.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <sanitizer/lsan_interface.h>

#ifndef FUZZ_TARGET
#error "build with -DFUZZ_TARGET=\"name\""
#endif
#ifndef FUZZ_ROOT
#error "build with -DFUZZ_ROOT=\"/path/to/connkit\""
#endif

int luaopen_connkit_core(lua_State *L);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;
static int run_ref = LUA_NOREF;

/* ------------------------------------------------------------------------ */
/* Lua line coverage as libFuzzer extra counters                             */

#define LINE_SLOTS (1u << 15)
__attribute__((used, section("__libfuzzer_extra_counters"))) static uint8_t
    lua_edges[LINE_SLOTS];
static unsigned prev_line;

static void line_hook(lua_State *l, lua_Debug *ar) {
  unsigned line = (unsigned)ar->currentline;
  unsigned slot = ((prev_line * 2654435761u) ^ line) & (LINE_SLOTS - 1);
  (void)l;
  if (lua_edges[slot] < 255) lua_edges[slot]++;
  prev_line = line;
}

/* ------------------------------------------------------------------------ */
/* References                                                                */

/* fuzz.curl_url(url) -> { scheme, host, port, path, query } | nil, code.
 * libcurl's parser with the default port filled in; only http(s) URLs. */
static int ref_curl_url(lua_State *l) {
  static const struct {
    CURLUPart part;
    const char *name;
  } parts[] = {{CURLUPART_SCHEME, "scheme"}, {CURLUPART_HOST, "host"},
               {CURLUPART_PORT, "port"},     {CURLUPART_PATH, "path"},
               {CURLUPART_QUERY, "query"},   {CURLUPART_USER, "user"}};
  size_t n, i;
  const char *url = luaL_checklstring(l, 1, &n);
  CURLU *u;
  CURLUcode rc;
  if (strlen(url) != n) {
    lua_pushnil(l);
    lua_pushinteger(l, -1);
    return 2;
  }
  u = curl_url();
  if (u == NULL) return luaL_error(l, "curl_url: out of memory");
  rc = curl_url_set(u, CURLUPART_URL, url, 0);
  if (rc != CURLUE_OK) {
    curl_url_cleanup(u);
    lua_pushnil(l);
    lua_pushinteger(l, (lua_Integer)rc);
    return 2;
  }
  lua_newtable(l);
  for (i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    char *v = NULL;
    if (curl_url_get(u, parts[i].part, &v, CURLU_DEFAULT_PORT) == CURLUE_OK) {
      lua_pushstring(l, v);
      lua_setfield(l, -2, parts[i].name);
    }
    curl_free(v);
  }
  curl_url_cleanup(u);
  return 1;
}

/* fuzz.knownhost(line, name) -> true | false (libssh2 says the line names
 * `name`), or nil when libssh2 does not read the line. Asks
 * libssh2_knownhost_checkp with the line's own key, so only the host part
 * decides. libssh2 1.10 leaks an HMAC_CTX per check of a hashed (|1|) entry:
 * LeakSanitizer is told to ignore what the reference allocates (connkit
 * itself calls none of libssh2's known_hosts functions). */
static int ref_knownhost(lua_State *l) {
  static LIBSSH2_SESSION *session;
  size_t n;
  const char *line = luaL_checklstring(l, 1, &n);
  const char *name = luaL_checkstring(l, 2);
  LIBSSH2_KNOWNHOSTS *kh;
  struct libssh2_knownhost *e = NULL;
  int r = -1;
  if (session == NULL) session = libssh2_session_init();
  if (session == NULL) return luaL_error(l, "libssh2_session_init failed");
  __lsan_disable();
  kh = libssh2_knownhost_init(session);
  if (kh == NULL) abort();
  if (libssh2_knownhost_readline(kh, line, n, LIBSSH2_KNOWNHOST_FILE_OPENSSH) == 0 &&
      libssh2_knownhost_get(kh, &e, NULL) == 0 && e != NULL && e->key != NULL) {
    int mask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_BASE64 |
               (e->typemask & LIBSSH2_KNOWNHOST_KEY_MASK);
    r = libssh2_knownhost_checkp(kh, name, -1, e->key, strlen(e->key), mask, NULL) ==
        LIBSSH2_KNOWNHOST_CHECK_MATCH;
  }
  libssh2_knownhost_free(kh);
  __lsan_enable();
  if (r < 0) lua_pushnil(l);
  else lua_pushboolean(l, r);
  return 1;
}

/* fuzz.send(port, data) -> fd: connects to 127.0.0.1:port, sends data and
 * shuts the sending side (the server sees the end of the request);
 * fuzz.close(fd) closes it. The client closes first, so its side of each
 * connection waits in TIME_WAIT for a minute: the source address cycles
 * through 127.0.1.1-200, or thousands of connections a second would run
 * out of ephemeral ports. */
static int client_send(lua_State *l) {
  static unsigned conns;
  lua_Integer port = luaL_checkinteger(l, 1);
  size_t n, off = 0;
  const char *data = luaL_checklstring(l, 2, &n);
  struct sockaddr_in a;
  int one = 1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return luaL_error(l, "socket failed");
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(0x7f000101u + conns++ % 200);
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return luaL_error(l, "bind to a loopback source address failed");
  }
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* (libFuzzer's timer signal interrupts calls: a connect goes on, then) */
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    struct pollfd p;
    int e = errno, err = 0;
    socklen_t len = sizeof err;
    p.fd = fd;
    p.events = POLLOUT;
    if (e == EINTR) {
      while (poll(&p, 1, 5000) < 0 && errno == EINTR) {}
      e = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 ? err : errno;
    }
    if (e != 0) {
      close(fd);
      return luaL_error(l, "connect to the loopback listener: %s", strerror(e));
    }
  }
  while (off < n) {
    ssize_t w = send(fd, data + off, n - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
  shutdown(fd, SHUT_WR);
  lua_pushinteger(l, fd);
  return 1;
}

static int client_close(lua_State *l) {
  close((int)luaL_checkinteger(l, 1));
  return 0;
}

/* ------------------------------------------------------------------------ */
/* libFuzzer                                                                 */

static void die(const char *what) {
  fprintf(stderr, "fuzz %s: %s: %s\n", FUZZ_TARGET, what,
          lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)");
  abort();
}

/* Error handler: the message with a traceback. */
static int traceback(lua_State *l) {
  luaL_traceback(l, l, lua_tostring(l, 1), 1);
  return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  static const luaL_Reg refs[] = {{"curl_url", ref_curl_url},
                                  {"knownhost", ref_knownhost},
                                  {"send", client_send},
                                  {"close", client_close},
                                  {NULL, NULL}};
  (void)argc;
  (void)argv;
  L = luaL_newstate();
  if (L == NULL) abort();
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_connkit_core);
  lua_setfield(L, -2, "connkit.core");
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  lua_pushstring(L, FUZZ_ROOT "/lua/?.lua;" FUZZ_ROOT "/lua/?/init.lua;" FUZZ_ROOT
                              "/fuzz/?.lua");
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  luaL_newlib(L, refs);
  lua_setglobal(L, "fuzz");
  lua_pushcfunction(L, traceback);
  if (luaL_loadfile(L, FUZZ_ROOT "/fuzz/" FUZZ_TARGET ".lua") != LUA_OK) die("load");
  if (lua_pcall(L, 0, 1, -2) != LUA_OK) die("init");
  if (!lua_isfunction(L, -1)) die("the script must return a function");
  run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  lua_sethook(L, line_hook, LUA_MASKLINE, 0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int top = lua_gettop(L);
  prev_line = 0;
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, run_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, top + 1) != LUA_OK) die("oracle failed");
  lua_settop(L, top);
  return 0;
}
