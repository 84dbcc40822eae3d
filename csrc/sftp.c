/*
 * sftp.c - libssh2: TCP connect with a timeout, the SSH handshake with
 * modern algorithms preferred, host-key facts (type, blob, SHA256
 * fingerprint), known_hosts lookup (hashed entries, [host]:port, patterns,
 * markers), login (password, keyboard-interactive, key file, key in memory)
 * and the session lifetime. SFTP operations live in sftp_fs.c.
 *
 * The policy (which key is acceptable, which login to try, what the error
 * says) is in lua/connkit/sftp/init.lua; these functions report facts. Run-time
 * failures return nil, code, message (ck_fail); misuse raises.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sftp.h"

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */

static const char *const fx_names[] = {
    "failure",      "failure",      "no_such_file",      "permission_denied",
    "failure",      "bad_message",  "connection",        "connection",
    "unsupported",  "invalid_handle", "no_such_file",    "file_exists",
    "permission_denied", "failure", "no_space",          "no_space",
    "failure",      "lock_conflict", "dir_not_empty",    "not_a_directory",
    "invalid_filename", "link_loop"};

static const char *const fx_texts[] = {
    "ok", "end of file", "no such file", "permission denied", "failure",
    "bad message", "no connection", "connection lost", "operation unsupported",
    "invalid handle", "no such path", "file already exists", "write protected",
    "no media", "no space on file system", "quota exceeded",
    "unknown principal", "lock conflict", "directory not empty",
    "not a directory", "invalid file name", "link loop"};

int sftp_fail_status(lua_State *L, unsigned long st, const char *what,
                     const char *path) {
  const char *sep = path ? " " : "";
  if (path == NULL) path = "";
  if (st < sizeof fx_names / sizeof fx_names[0])
    return ck_fail(L, fx_names[st], "%s%s%s: %s", what, sep, path, fx_texts[st]);
  return ck_fail(L, "failure", "%s%s%s: SFTP status %lu", what, sep, path, st);
}

int sftp_fail(lua_State *L, ck_session *s, const char *what, const char *path) {
  char *m = NULL;
  int rc = s->ssh ? libssh2_session_last_error(s->ssh, &m, NULL, 0) : 0;
  const char *msg = m ? m : "unknown error";
  const char *code = "protocol"; /* any other libssh2 failure */
  const char *sep = path ? " " : "";
  if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL && s->sftp != NULL)
    return sftp_fail_status(L, libssh2_sftp_last_error(s->sftp), what, path);
  if (path == NULL) path = "";
  switch (rc) {
    case LIBSSH2_ERROR_TIMEOUT:
      s->broken = 1;
      return ck_fail(L, "timeout", "%s%s%s: no answer within %ld ms", what,
                     sep, path, s->timeout_ms);
    case LIBSSH2_ERROR_SOCKET_SEND:
    case LIBSSH2_ERROR_SOCKET_RECV:
    case LIBSSH2_ERROR_SOCKET_DISCONNECT:
    case LIBSSH2_ERROR_SOCKET_TIMEOUT:
    case LIBSSH2_ERROR_BANNER_RECV:
    case LIBSSH2_ERROR_BANNER_SEND:
    case LIBSSH2_ERROR_CHANNEL_CLOSED:
    case LIBSSH2_ERROR_CHANNEL_EOF_SENT:
      s->broken = 1;
      code = "connection";
      break;
    case LIBSSH2_ERROR_KEX_FAILURE:
    case LIBSSH2_ERROR_METHOD_NONE:
      code = "negotiation";
      break;
    case LIBSSH2_ERROR_AUTHENTICATION_FAILED:
    case LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:
    case LIBSSH2_ERROR_PASSWORD_EXPIRED:
      code = "auth";
      break;
    case LIBSSH2_ERROR_FILE: /* sftp_login.lua names the real cause */
    case LIBSSH2_ERROR_KEYFILE_AUTH_FAILED:
      code = "key_format";
      break;
    default:
      break;
  }
  return ck_fail(L, code, "%s%s%s: %s", what, sep, path, msg);
}

/* ------------------------------------------------------------------------ */
/* Session object                                                            */

ck_session *sftp_check_session(lua_State *L, int i, int need_sftp) {
  ck_session *s = (ck_session *)luaL_checkudata(L, i, CK_SSH_SESSION);
  if (s->ssh == NULL) luaL_error(L, "attempt to use a closed SFTP session");
  if (s->busy) luaL_error(L, "SFTP session is busy with a parallel transfer");
  if (need_sftp && s->sftp == NULL)
    luaL_error(L, "SFTP session is not logged in");
  return s;
}

static long long now_ms(void);

/* Breaks the session: no more waiting on the peer, every send fails. */
static void session_break(ck_session *s) {
  s->broken = 1;
  if (s->sock >= 0) shutdown(s->sock, SHUT_RDWR);
}

/* Gives the next goodbye step what is left until deadline; breaks the
 * session once nothing is left. */
static void release_budget(ck_session *s, long long deadline) {
  long long left = deadline - now_ms();
  if (left <= 0 && !s->broken) session_break(s);
  libssh2_session_set_timeout(s->ssh, left > 0 ? (long)left : 1);
}

/* Closes every handle, the SFTP channel, the SSH session and the socket.
 * Idempotent; serves close, __gc and __close. A broken session (timeout,
 * dead transport) is freed without the goodbye exchange. A healthy one gets
 * one timeout (at most 5 s) for the whole exchange, not one per step: a
 * server that stops answering meanwhile breaks it, and the rest is freed
 * without waiting. */
static void session_release(ck_session *s) {
  if (s->ssh != NULL) {
    long cap = (s->timeout_ms <= 0 || s->timeout_ms > 5000) ? 5000 : s->timeout_ms;
    long long deadline = now_ms() + cap;
    if (s->broken) session_break(s);
    sftp_close_deferred(s);
    while (s->handles != NULL) {
      release_budget(s, deadline);
      sftp_handle_close(s->handles);
    }
    if (s->ext != NULL) {
      release_budget(s, deadline);
      sftp_ext_close(s);
      if (s->broken) session_break(s);
    }
    if (s->sftp != NULL) {
      release_budget(s, deadline);
      if (libssh2_sftp_shutdown(s->sftp) != 0) session_break(s);
    }
    s->sftp = NULL;
    if (!s->broken)
      libssh2_session_disconnect(s->ssh, "connkit: session closed");
    libssh2_session_free(s->ssh);
    s->ssh = NULL;
  }
  if (s->sock >= 0) close(s->sock);
  s->sock = -1;
}

static int session_close(lua_State *L) {
  ck_session *s = (ck_session *)luaL_checkudata(L, 1, CK_SSH_SESSION);
  if (s->busy) return luaL_error(L, "SFTP session is busy with a parallel transfer");
  session_release(s);
  return 0;
}

static int session_tostring(lua_State *L) {
  ck_session *s = (ck_session *)luaL_checkudata(L, 1, CK_SSH_SESSION);
  lua_pushfstring(L, "connkit.ssh.session (%s)", s->ssh ? "open" : "closed");
  return 1;
}

/* ------------------------------------------------------------------------ */
/* TCP connect with a deadline                                               */

static long long now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Tries one address: non-blocking connect, poll until the deadline. Returns
 * the connected socket (left blocking) or -1 with errno set. */
static int connect_one(const struct addrinfo *ai, long long deadline) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  int flags, err = 0, one = 1;
  socklen_t len = sizeof err;
  if (fd < 0) return -1;
  flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    struct pollfd pfd;
    int rc;
    if (errno != EINPROGRESS) goto fail;
    pfd.fd = fd;
    pfd.events = POLLOUT;
    do {
      long long left = deadline - now_ms();
      if (left <= 0) {
        errno = ETIMEDOUT;
        goto fail;
      }
      rc = poll(&pfd, 1, (int)(left > 1000000 ? 1000000 : left));
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) {
      errno = ETIMEDOUT;
      goto fail;
    }
    if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
      goto fail;
    if (err != 0) {
      errno = err;
      goto fail;
    }
  }
  fcntl(fd, F_SETFL, flags);
  /* libssh2 does not set TCP_NODELAY itself: without it Nagle holds back a
   * short packet (a request's tail, a window adjust) until the previous one
   * is acknowledged (a libssh2 1.10 probe on loopback: get 198 -> 263
   * MiB/s, put 278 -> 332 MiB/s with it) */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
fail:
  err = errno;
  close(fd);
  errno = err;
  return -1;
}

/* ------------------------------------------------------------------------ */
/* Algorithm preferences                                                     */

static const char *const kex_modern =
    "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,"
    "ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-"
    "sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,"
    "diffie-hellman-group14-sha256";
static const char *const kex_legacy =
    ",diffie-hellman-group14-sha1,diffie-hellman-group-exchange-sha1,"
    "diffie-hellman-group1-sha1";
static const char *const hostkey_modern =
    "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,"
    "ssh-rsa";
static const char *const hostkey_legacy = ",ssh-dss";
static const char *const cipher_modern = "aes128-ctr,aes192-ctr,aes256-ctr";
static const char *const cipher_legacy =
    ",aes256-cbc,aes192-cbc,aes128-cbc,rijndael-cbc@lysator.liu.se,"
    "blowfish-cbc,cast128-cbc,3des-cbc,arcfour128,arcfour";
static const char *const mac_modern = "hmac-sha2-256,hmac-sha2-512";
static const char *const mac_legacy =
    ",hmac-sha1,hmac-sha1-96,hmac-md5,hmac-md5-96,hmac-ripemd160";

/* True when name is one of the n supported algorithms. */
static int algo_supported(const char **algs, int n, const char *name,
                          size_t len) {
  int i;
  for (i = 0; i < n; i++)
    if (strlen(algs[i]) == len && memcmp(algs[i], name, len) == 0) return 1;
  return 0;
}

/* Appends each supported name of the comma list `names` to out (comma
 * separated), skipping names already present. */
static void algo_append(char *out, size_t size, const char **algs, int n,
                        const char *names) {
  const char *p = names;
  while (*p) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len > 0 && algo_supported(algs, n, p, len)) {
      char item[128];
      const char *q = out;
      int dup = 0;
      if (len >= sizeof item) len = sizeof item - 1;
      memcpy(item, p, len);
      item[len] = '\0';
      while (*q) { /* already listed? */
        const char *qe = strchr(q, ',');
        size_t ql = qe ? (size_t)(qe - q) : strlen(q);
        if (ql == len && memcmp(q, item, len) == 0) dup = 1;
        q += ql + (qe ? 1 : 0);
      }
      if (!dup && strlen(out) + len + 2 < size) {
        if (*out) strcat(out, ",");
        strcat(out, item);
      }
    }
    p += len + (p[len] == ',' ? 1 : 0);
  }
}

/* Sets the preference list of one method type (both directions when
 * method2 >= 0): `first` (may be NULL) then `modern`, then `legacy` when
 * allowed, keeping only what this libssh2 supports. */
static int set_prefs(ck_session *s, int method, int method2, const char *first,
                     const char *modern, const char *legacy, int allow_legacy) {
  const char **algs = NULL;
  char list[1024], allowed[1024];
  int n = libssh2_session_supported_algs(s->ssh, method, &algs);
  int rc = 0;
  if (n <= 0) { /* cannot ask: set the list; libssh2 drops unknown names */
    char both[1024];
    snprintf(both, sizeof both, "%s%s", modern, allow_legacy ? legacy : "");
    rc = libssh2_session_method_pref(s->ssh, method, both);
    if (rc == 0 && method2 >= 0)
      rc = libssh2_session_method_pref(s->ssh, method2, both);
    return rc;
  }
  list[0] = allowed[0] = '\0';
  algo_append(allowed, sizeof allowed, algs, n, modern);
  if (allow_legacy) algo_append(allowed, sizeof allowed, algs, n, legacy);
  if (first != NULL && *first) { /* only those also allowed */
    const char *p = first;
    while (*p) {
      const char *e = strchr(p, ',');
      size_t len = e ? (size_t)(e - p) : strlen(p);
      char one[128];
      if (len > 0 && len < sizeof one) {
        const char *names[1];
        memcpy(one, p, len);
        one[len] = '\0';
        names[0] = one;
        if (strstr(allowed, one) != NULL)
          algo_append(list, sizeof list, names, 1, one);
      }
      p += len + (p[len] == ',' ? 1 : 0);
    }
  }
  {
    /* `allowed` holds supported names only: append them as-is */
    const char *names[64];
    char copy[1024];
    int k = 0;
    char *tok, *save = NULL;
    strcpy(copy, allowed);
    for (tok = strtok_r(copy, ",", &save); tok && k < 64;
         tok = strtok_r(NULL, ",", &save))
      names[k++] = tok;
    algo_append(list, sizeof list, names, k, allowed);
  }
  libssh2_free(s->ssh, algs);
  if (list[0] == '\0') /* nothing usable: let libssh2 refuse the list */
    snprintf(list, sizeof list, "%s", modern);
  rc = libssh2_session_method_pref(s->ssh, method, list);
  if (rc == 0 && method2 >= 0)
    rc = libssh2_session_method_pref(s->ssh, method2, list);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Connect                                                                   */

static LIBSSH2_USERAUTH_KBDINT_RESPONSE_FUNC(kbd_respond);

/* core.ssh_connect(host, port, timeout_seconds, opts) -> session | nil, code,
 * message. opts: legacy (bool), hostkeys ("type,type": put first). Resolves
 * with getaddrinfo (IPv4 and IPv6), connects within the timeout, and runs
 * the SSH handshake; the host key is NOT checked here (see :hostkey()). */
static int ssh_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  lua_Number timeout = luaL_checknumber(L, 3);
  int legacy = 0;
  const char *first = NULL;
  char portstr[16];
  struct addrinfo hints, *res = NULL, *ai;
  long long deadline;
  int rc, fd = -1, saved = 0;
  ck_session *s;

  if (port < 1 || port > 65535) return luaL_argerror(L, 2, "port out of range");
  if (!(timeout > 0)) return luaL_argerror(L, 3, "timeout must be > 0");
  if (lua_istable(L, 4)) {
    lua_getfield(L, 4, "legacy");
    legacy = lua_toboolean(L, -1);
    lua_getfield(L, 4, "hostkeys");
    first = lua_tostring(L, -1);
    lua_pop(L, 1); /* string stays referenced by the table */
    lua_pop(L, 1);
  }

  s = (ck_session *)lua_newuserdatauv(L, sizeof *s, 1);
  memset(s, 0, sizeof *s);
  s->sock = -1;
  s->timeout_ms = ck_seconds_to_ms((double)timeout); /* never 0: "none" */
  luaL_setmetatable(L, CK_SSH_SESSION);

  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  snprintf(portstr, sizeof portstr, "%d", (int)port);
  rc = getaddrinfo(host, portstr, &hints, &res);
  if (rc != 0)
    return ck_fail(L, "resolve", "cannot resolve %s: %s", host,
                   gai_strerror(rc));
  deadline = now_ms() + s->timeout_ms;
  for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
    fd = connect_one(ai, deadline);
    if (fd < 0) saved = errno;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    if (saved == ETIMEDOUT)
      return ck_fail(L, "timeout", "connect to %s port %d: no answer within %ld ms",
                     host, (int)port, s->timeout_ms);
    return ck_fail(L, "connect", "connect to %s port %d: %s", host, (int)port,
                   strerror(saved));
  }
  s->sock = fd;

  s->ssh = libssh2_session_init_ex(NULL, NULL, NULL, s);
  if (s->ssh == NULL) return ck_fail(L, "protocol", "cannot create an SSH session");
  libssh2_session_set_blocking(s->ssh, 1);
  libssh2_session_set_timeout(s->ssh, s->timeout_ms);
  libssh2_session_flag(s->ssh, LIBSSH2_FLAG_COMPRESS, 0);
  if (set_prefs(s, LIBSSH2_METHOD_KEX, -1, NULL, kex_modern, kex_legacy, legacy) ||
      set_prefs(s, LIBSSH2_METHOD_HOSTKEY, -1, first, hostkey_modern,
                hostkey_legacy, legacy) ||
      set_prefs(s, LIBSSH2_METHOD_CRYPT_CS, LIBSSH2_METHOD_CRYPT_SC, NULL,
                cipher_modern, cipher_legacy, legacy) ||
      set_prefs(s, LIBSSH2_METHOD_MAC_CS, LIBSSH2_METHOD_MAC_SC, NULL,
                mac_modern, mac_legacy, legacy))
    return sftp_fail(L, s, "set algorithm preferences", NULL);
  if (libssh2_session_handshake(s->ssh, s->sock) != 0) {
    int e = libssh2_session_last_errno(s->ssh);
    if (e == LIBSSH2_ERROR_KEX_FAILURE && !legacy) {
      char *msg = NULL;
      libssh2_session_last_error(s->ssh, &msg, NULL, 0);
      rc = ck_fail(L, "negotiation",
                   "SSH handshake with %s port %d: %s (no common algorithm; "
                   "sftp.legacy_algorithms = true also offers older ones)",
                   host, (int)port, msg ? msg : "");
      s->broken = 1;
      session_release(s);
      return rc;
    }
    {
      char what[300];
      snprintf(what, sizeof what, "SSH handshake with %s port %d", host,
               (int)port);
      rc = sftp_fail(L, s, what, NULL);
      s->broken = 1;
      session_release(s);
      return rc;
    }
  }
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Host key                                                                  */

static const char *hostkey_type_name(int type) {
  switch (type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return "ssh-rsa";
    case LIBSSH2_HOSTKEY_TYPE_DSS: return "ssh-dss";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ssh-ed25519";
    default: return "unknown";
  }
}

/* Pushes the base64 of data; strip removes the '=' padding. */
static void push_base64(lua_State *L, const unsigned char *data, size_t len,
                        int strip) {
  size_t n = 4 * ((len + 2) / 3) + 1;
  char *out = (char *)malloc(n);
  int w;
  if (out == NULL) luaL_error(L, "out of memory");
  w = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
  while (strip && w > 0 && out[w - 1] == '=') w--;
  lua_pushlstring(L, out, (size_t)w);
  free(out);
}

/* session:hostkey() -> type name, base64 key blob, "SHA256:..." fingerprint
 * (the string `ssh-keygen -l -E sha256` prints). */
static int session_hostkey(lua_State *L) {
  ck_session *s = sftp_check_session(L, 1, 0);
  size_t len = 0;
  int type = 0;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  const char *key = libssh2_session_hostkey(s->ssh, &len, &type);
  if (key == NULL) return sftp_fail(L, s, "read the host key", NULL);
  if (!EVP_Digest(key, len, md, &mdlen, EVP_sha256(), NULL))
    return ck_fail(L, "protocol", "hash the host key: OpenSSL failed");
  lua_pushstring(L, hostkey_type_name(type));
  push_base64(L, (const unsigned char *)key, len, 0);
  lua_pushliteral(L, "SHA256:");
  push_base64(L, md, mdlen, 1);
  lua_concat(L, 2);
  return 3;
}

/* Decodes base64 into out (size >= 3/4 of len); returns bytes or -1. */
int sftp_base64_decode(const char *in, size_t len, unsigned char *out) {
  int n, pad = 0;
  if (len == 0 || len % 4 != 0) return -1;
  n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
  if (n < 0) return -1;
  if (in[len - 1] == '=') pad++;
  if (in[len - 2] == '=') pad++;
  return n - pad;
}

/* Glob match of a known_hosts pattern (`*` any run, `?` one character,
 * everything else literal, as OpenSSH's match_pattern), case-insensitive.
 * Iterative, backtracking to the last star only: O(plen * strlen(s)) at
 * worst. (A recursive matcher is exponential in the number of stars: a
 * line with a dozen `*` took a minute of CPU.) After a star, a mismatch
 * can only be repaired by letting that star take one more character;
 * earlier stars never need to take more, since the later star can absorb
 * whatever they would. */
static int glob_match(const char *p, size_t plen, const char *s) {
  size_t pi = 0, star_pi = 0;
  const char *star_s = NULL; /* where the last star's run ends, or NULL */
  while (*s != '\0') {
    if (pi < plen && p[pi] == '*') {
      star_pi = ++pi;
      star_s = s;
    } else if (pi < plen &&
               (p[pi] == '?' ||
                tolower((unsigned char)p[pi]) == tolower((unsigned char)*s))) {
      pi++;
      s++;
    } else if (star_s != NULL) { /* the last star takes one more character */
      pi = star_pi;
      s = ++star_s;
    } else {
      return 0;
    }
  }
  while (pi < plen && p[pi] == '*') pi++;
  return pi == plen;
}

/* Does the hosts field (len bytes) of a known_hosts line name `name`?
 * Handles |1|salt|hash (HMAC-SHA1) entries and pattern lists with '!'. */
static int hosts_match(const char *f, size_t len, const char *name) {
  if (len > 3 && memcmp(f, "|1|", 3) == 0) {
    const char *salt = f + 3, *bar = memchr(salt, '|', len - 3);
    unsigned char sbuf[128], hbuf[128], mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    int sl, hl;
    if (bar == NULL || (size_t)(bar - salt) > 160 || (size_t)(f + len - bar - 1) > 160)
      return 0;
    sl = sftp_base64_decode(salt, (size_t)(bar - salt), sbuf);
    hl = sftp_base64_decode(bar + 1, (size_t)(f + len - bar - 1), hbuf);
    if (sl <= 0 || hl <= 0) return 0;
    if (HMAC(EVP_sha1(), sbuf, sl, (const unsigned char *)name, strlen(name),
             mac, &maclen) == NULL)
      return 0;
    return (unsigned int)hl == maclen && memcmp(mac, hbuf, maclen) == 0;
  } else {
    const char *p = f, *end = f + len;
    int hit = 0;
    while (p < end) {
      const char *c = memchr(p, ',', (size_t)(end - p));
      size_t pl = c ? (size_t)(c - p) : (size_t)(end - p);
      int neg = pl > 0 && *p == '!';
      if (glob_match(p + neg, pl - neg, name)) {
        if (neg) return 0;
        hit = 1;
      }
      p += pl + 1;
    }
    return hit;
  }
}

/* Splits off the next whitespace-separated field of *pp. */
static const char *next_field(const char **pp, size_t *len) {
  const char *p = *pp, *b;
  while (*p == ' ' || *p == '\t') p++;
  b = p;
  while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') p++;
  *len = (size_t)(p - b);
  *pp = p;
  return *len ? b : NULL;
}

/* core.known_hosts(path, name) -> list of { type=, key=, marker= } for every
 * line naming `name` ("host" or "[host]:port", compared in lower case), or
 * nil, code, message when the file cannot be read. Lines with key types
 * this library does not know are returned too; the caller decides. */
static int known_hosts(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *raw = luaL_checkstring(L, 2);
  char name[1100], line[16384];
  size_t i;
  int n = 0;
  FILE *f;
  for (i = 0; raw[i] && i < sizeof name - 1; i++)
    name[i] = (char)tolower((unsigned char)raw[i]);
  name[i] = '\0';
  f = fopen(path, "r");
  if (f == NULL)
    return ck_fail(L, "host_key_unknown", "cannot read known_hosts file %s: %s",
                   path, strerror(errno));
  lua_newtable(L);
  while (fgets(line, sizeof line, f) != NULL) {
    const char *p = line, *hosts, *type, *key, *marker = NULL;
    size_t hl, tl, kl, ml = 0;
    if (strchr(line, '\n') == NULL && !feof(f)) { /* overlong: skip it */
      int c;
      while ((c = fgetc(f)) != EOF && c != '\n') {}
      continue;
    }
    hosts = next_field(&p, &hl);
    if (hosts == NULL || *hosts == '#') continue;
    if (*hosts == '@') {
      marker = hosts;
      ml = hl;
      hosts = next_field(&p, &hl);
      if (hosts == NULL) continue;
    }
    type = next_field(&p, &tl);
    key = next_field(&p, &kl);
    if (type == NULL || key == NULL || !hosts_match(hosts, hl, name)) continue;
    lua_createtable(L, 0, 3);
    lua_pushlstring(L, type, tl);
    lua_setfield(L, -2, "type");
    lua_pushlstring(L, key, kl);
    lua_setfield(L, -2, "key");
    if (marker != NULL) {
      lua_pushlstring(L, marker + 1, ml - 1);
      lua_setfield(L, -2, "marker");
    }
    lua_rawseti(L, -2, ++n);
  }
  fclose(f);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Login                                                                     */

/* session:auth_list(user) -> "method,method" | true when the "none" login
 * already succeeded | nil, code, message. */
static int session_auth_list(lua_State *L) {
  ck_session *s = sftp_check_session(L, 1, 0);
  size_t ul;
  const char *user = luaL_checklstring(L, 2, &ul);
  char *list = libssh2_userauth_list(s->ssh, user, (unsigned int)ul);
  if (list != NULL) {
    lua_pushstring(L, list);
    return 1;
  }
  if (libssh2_userauth_authenticated(s->ssh)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return sftp_fail(L, s, "ask for the login methods", NULL);
}

/* session:auth_password(user, password) -> true | nil, code, message. */
static int session_auth_password(lua_State *L) {
  ck_session *s = sftp_check_session(L, 1, 0);
  size_t ul, pl;
  const char *user = luaL_checklstring(L, 2, &ul);
  const char *pass = luaL_checklstring(L, 3, &pl);
  if (libssh2_userauth_password_ex(s->ssh, user, (unsigned int)ul, pass,
                                   (unsigned int)pl, NULL) != 0)
    return sftp_fail(L, s, "password login", NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* Answers every hidden prompt with the password of the running login and
 * visible prompts with nothing. Runs inside libssh2: no Lua here. */
static LIBSSH2_USERAUTH_KBDINT_RESPONSE_FUNC(kbd_respond) {
  ck_session *s = (ck_session *)*abstract;
  int i;
  (void)name;
  (void)name_len;
  (void)instruction;
  (void)instruction_len;
  for (i = 0; i < num_prompts; i++) {
    const char *ans = (s->kbd_password && !prompts[i].echo) ? s->kbd_password : "";
    size_t len = (s->kbd_password && !prompts[i].echo) ? s->kbd_len : 0;
    responses[i].text = (char *)malloc(len + 1);
    responses[i].length = 0;
    if (responses[i].text != NULL) {
      memcpy(responses[i].text, ans, len);
      responses[i].text[len] = '\0';
      responses[i].length = (unsigned int)len;
    }
  }
}

/* session:auth_kbdint(user, password) -> true | nil, code, message. */
static int session_auth_kbdint(lua_State *L) {
  ck_session *s = sftp_check_session(L, 1, 0);
  size_t ul;
  const char *user = luaL_checklstring(L, 2, &ul);
  int rc;
  s->kbd_password = luaL_checklstring(L, 3, &s->kbd_len);
  rc = libssh2_userauth_keyboard_interactive_ex(s->ssh, user, (unsigned int)ul,
                                                kbd_respond);
  s->kbd_password = NULL;
  s->kbd_len = 0;
  if (rc != 0) return sftp_fail(L, s, "keyboard-interactive login", NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* libssh2 1.10 leaks a BIGNUM each time it reads an ECDSA key in OpenSSH
 * format (gen_publickey_from_ecdsa_openssh_priv_data never frees the private
 * exponent; fixed in 1.11). Under LeakSanitizer that library leak is not
 * ours to report, so the key login runs with leak tracking paused; without
 * a sanitizer these weak symbols are NULL and nothing happens. */
void __lsan_disable(void) __attribute__((weak));
void __lsan_enable(void) __attribute__((weak));

/* session:auth_key(user, path | nil, data | nil, passphrase | nil)
 * -> true | nil, code, message. The public key is derived from the private
 * one. */
static int session_auth_key(lua_State *L) {
  ck_session *s = sftp_check_session(L, 1, 0);
  size_t ul, dl = 0;
  const char *user = luaL_checklstring(L, 2, &ul);
  const char *path = luaL_optstring(L, 3, NULL);
  const char *data = luaL_optlstring(L, 4, NULL, &dl);
  const char *pass = luaL_optstring(L, 5, NULL);
  int rc;
  if (path == NULL && data == NULL)
    return luaL_error(L, "auth_key needs a key file or key data");
  if (__lsan_disable) __lsan_disable();
  if (path != NULL)
    rc = libssh2_userauth_publickey_fromfile_ex(s->ssh, user, (unsigned int)ul,
                                                NULL, path, pass);
  else
    rc = libssh2_userauth_publickey_frommemory(s->ssh, user, ul, NULL, 0, data,
                                               dl, pass);
  if (__lsan_enable) __lsan_enable();
  if (rc != 0) {
    /* a key libssh2 could not parse (seen with keys in memory); the server's
     * refusal and transport failures have their own codes */
    int e = libssh2_session_last_errno(s->ssh);
    if (e == LIBSSH2_ERROR_PROTO || e == LIBSSH2_ERROR_METHOD_NOT_SUPPORTED ||
        e == LIBSSH2_ERROR_INVAL || e == LIBSSH2_ERROR_OUT_OF_BOUNDARY) {
      char *m = NULL;
      libssh2_session_last_error(s->ssh, &m, NULL, 0);
      return ck_fail(L, "key_format", "public key login: %s",
                     m ? m : "the key cannot be used");
    }
    return sftp_fail(L, s, "public key login", NULL);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* session:sftp_init() -> true | nil, code, message: opens the SFTP channel. */
static int session_sftp_init(lua_State *L) {
  ck_session *s = sftp_check_session(L, 1, 0);
  if (s->sftp == NULL) {
    s->sftp = libssh2_sftp_init(s->ssh);
    if (s->sftp == NULL) return sftp_fail(L, s, "start the SFTP subsystem", NULL);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* session:set_timeout(seconds): the limit for each blocking call. */
static int session_set_timeout(lua_State *L) {
  ck_session *s = sftp_check_session(L, 1, 0);
  lua_Number t = luaL_checknumber(L, 2);
  luaL_argcheck(L, t > 0, 2, "timeout must be > 0");
  s->timeout_ms = ck_seconds_to_ms((double)t); /* never 0: "none" */
  libssh2_session_set_timeout(s->ssh, s->timeout_ms);
  return 0;
}

/* session:tcp_nodelay() -> bool: whether TCP_NODELAY is set on the SSH
 * socket (read back with getsockopt; for the specs and the bench). */
static int session_tcp_nodelay(lua_State *L) {
  ck_session *s = sftp_check_session(L, 1, 0);
  int on = 0;
  socklen_t len = sizeof on;
  if (s->sock < 0 || getsockopt(s->sock, IPPROTO_TCP, TCP_NODELAY, &on, &len) != 0)
    on = 0;
  lua_pushboolean(L, on != 0);
  return 1;
}

/* session:is_open() -> bool */
static int session_is_open(lua_State *L) {
  ck_session *s = (ck_session *)luaL_checkudata(L, 1, CK_SSH_SESSION);
  lua_pushboolean(L, s->ssh != NULL && !s->broken);
  return 1;
}

static const luaL_Reg session_methods[] = {
    {"hostkey", session_hostkey},
    {"auth_list", session_auth_list},
    {"auth_password", session_auth_password},
    {"auth_kbdint", session_auth_kbdint},
    {"auth_key", session_auth_key},
    {"sftp_init", session_sftp_init},
    {"set_timeout", session_set_timeout},
    {"is_open", session_is_open},
    {"tcp_nodelay", session_tcp_nodelay},
    {"close", session_close},
    {NULL, NULL}};

static const luaL_Reg session_meta[] = {
    {"__gc", session_close},
    {"__close", session_close},
    {"__tostring", session_tostring},
    {NULL, NULL}};

void sftp_open(lua_State *L) {
  compat_newclass(L, CK_SSH_SESSION, session_methods, session_meta);
  luaL_getmetatable(L, CK_SSH_SESSION);
  lua_getfield(L, -1, "__index");
  sftp_fs_open(L); /* adds the SFTP operations to the method table */
  sftp_ext_open(L);
  lua_pop(L, 2);
  lua_pushcfunction(L, ssh_connect);
  lua_setfield(L, -2, "ssh_connect");
  lua_pushcfunction(L, known_hosts);
  lua_setfield(L, -2, "known_hosts");
  lua_pushcfunction(L, sftp_key_info);
  lua_setfield(L, -2, "ssh_key_info");
  sftp_parallel_open(L);
}
