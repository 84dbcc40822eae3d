/*
 * sftp_ext.c - SFTP extensions libssh2 1.10 has no call for: today only
 * posix-rename@openssh.com, the one atomic way to replace a file over SFTP
 * v3 (plain SSH_FXP_RENAME refuses an existing target on OpenSSH).
 *
 * libssh2 exposes no way to send an SSH_FXP_EXTENDED request on its own
 * SFTP channel (writing there behind its back would break its request ids
 * and packet queue). So the session opens a second SFTP channel of its own
 * on the same SSH connection, with libssh2's public channel API, speaks the
 * few packets it needs (INIT/VERSION, EXTENDED/STATUS; draft-ietf-secsh-
 * filexfer-02 framing) and keeps it for the session's lifetime. The VERSION
 * reply on that channel also says whether the server offers the extension.
 * Both channels run on one SSH connection, so they see the same files.
 *
 * Every wait is bounded by the session timeout (libssh2's blocking calls);
 * a timeout or transport failure breaks the session, as elsewhere.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sftp.h"

#define FXP_INIT 1
#define FXP_VERSION 2
#define FXP_EXTENDED 200
#define FXP_STATUS 101
#define FX_OK 0
#define FX_OP_UNSUPPORTED 8
#define MAX_REPLY (256u * 1024) /* VERSION with every extension fits */

static const char POSIX_RENAME[] = "posix-rename@openssh.com";

static void put_u32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

static uint32_t get_u32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Writes all of buf on the channel: 0, or libssh2's error code. */
static int ext_send(LIBSSH2_CHANNEL *ch, const unsigned char *buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    ssize_t rc =
        libssh2_channel_write(ch, (const char *)buf + done, len - done);
    if (rc < 0) return (int)rc;
    done += (size_t)rc;
  }
  return 0;
}

/* Reads exactly len bytes: 0, or libssh2's error code (end of the channel
 * counts as LIBSSH2_ERROR_CHANNEL_CLOSED). */
static int ext_recv(ck_session *s, unsigned char *buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    ssize_t rc = libssh2_channel_read(s->ext, (char *)buf + done, len - done);
    if (rc < 0) return (int)rc;
    if (rc == 0)
      return libssh2_session_set_last_error(
          s->ssh, LIBSSH2_ERROR_CHANNEL_CLOSED,
          "the SFTP server closed the channel");
    done += (size_t)rc;
  }
  return 0;
}

/* Reads one SFTP packet into a malloc'd buffer (type byte first): its
 * length, or libssh2's error code (a packet over MAX_REPLY: PROTO). */
static long ext_packet(ck_session *s, unsigned char **out) {
  unsigned char hdr[4];
  uint32_t len;
  int rc = ext_recv(s, hdr, 4);
  *out = NULL;
  if (rc != 0) return rc;
  len = get_u32(hdr);
  if (len == 0 || len > MAX_REPLY)
    return libssh2_session_set_last_error(
        s->ssh, LIBSSH2_ERROR_PROTO, "bad SFTP packet length from the server");
  *out = (unsigned char *)malloc(len);
  if (*out == NULL)
    return libssh2_session_set_last_error(s->ssh, LIBSSH2_ERROR_ALLOC,
                                          "out of memory");
  rc = ext_recv(s, *out, len);
  if (rc != 0) {
    free(*out);
    *out = NULL;
    return rc;
  }
  return (long)len;
}

/* Does the VERSION packet (len bytes, type first) list the extension? */
static int version_offers(const unsigned char *p, long len, const char *name) {
  long i = 5; /* type, version */
  size_t nl = strlen(name);
  if (len < 5 || p[0] != FXP_VERSION) return 0;
  while (i + 4 <= len) { /* name, data: both strings */
    uint32_t kl = get_u32(p + i), dl;
    if (kl > (uint32_t)(len - i - 4)) return 0;
    if (kl == nl && memcmp(p + i + 4, name, nl) == 0) return 1;
    i += 4 + (long)kl;
    if (i + 4 > len) return 0;
    dl = get_u32(p + i);
    if (dl > (uint32_t)(len - i - 4)) return 0;
    i += 4 + (long)dl;
  }
  return 0;
}

/* Opens the extension channel once. Returns 1 when it is ready, 0 when the
 * server cannot give one (a second channel or the subsystem refused, e.g.
 * MaxSessions 1) or does not offer posix-rename, -1 on a failure (libssh2's
 * last error says which; the channel is then not used again). */
static int ext_ready(ck_session *s) {
  unsigned char init[9], *reply = NULL;
  long len;
  int e;
  if (s->ext_state != EXT_UNKNOWN) return s->ext_state == EXT_READY ? 1 : 0;
  s->ext_state = EXT_FAILED; /* until it is known to work */
  s->ext = libssh2_channel_open_session(s->ssh);
  if (s->ext == NULL || libssh2_channel_subsystem(s->ext, "sftp") != 0) {
    e = libssh2_session_last_errno(s->ssh);
    if (e != LIBSSH2_ERROR_CHANNEL_FAILURE &&
        e != LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED &&
        e != LIBSSH2_ERROR_REQUEST_DENIED)
      return -1;
    sftp_ext_close(s);
    s->ext_state = EXT_NONE;
    return 0;
  }
  put_u32(init, 5);
  init[4] = FXP_INIT;
  put_u32(init + 5, 3);
  if (ext_send(s->ext, init, sizeof init) != 0) return -1;
  len = ext_packet(s, &reply);
  if (len < 0) return -1;
  s->ext_state =
      version_offers(reply, len, POSIX_RENAME) ? EXT_READY : EXT_NONE;
  free(reply);
  return s->ext_state == EXT_READY;
}

/* session:posix_rename(from, to) -> true | false when the server cannot do
 * it (extension not offered, no second channel, "unsupported") | nil, code,
 * message. Replaces `to` atomically, as rename(2) on the server. */
static int fs_posix_rename(lua_State *L) {
  ck_session *s = sftp_check_session(L, 1, 1);
  size_t fl, tl, n;
  const char *from = luaL_checklstring(L, 2, &fl);
  const char *to = luaL_checklstring(L, 3, &tl);
  unsigned char *req, *reply = NULL, *p;
  uint32_t id;
  long len;
  int rc;
  if (fl > 65536 || tl > 65536) return luaL_error(L, "path too long");
  if (s->ext_state == EXT_FAILED)
    return ck_fail(L, "protocol",
                   "rename %s: the SFTP extension channel failed before", from);
  rc = ext_ready(s);
  if (rc < 0) return sftp_fail(L, s, "rename", from);
  if (rc == 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  id = ++s->ext_id;
  n = 4 + 1 + 4 + 4 + (sizeof POSIX_RENAME - 1) + 4 + fl + 4 + tl;
  req = (unsigned char *)malloc(n);
  if (req == NULL) return luaL_error(L, "out of memory");
  p = req;
  put_u32(p, (uint32_t)(n - 4));
  p[4] = FXP_EXTENDED;
  put_u32(p + 5, id);
  p += 9;
  put_u32(p, (uint32_t)(sizeof POSIX_RENAME - 1));
  memcpy(p + 4, POSIX_RENAME, sizeof POSIX_RENAME - 1);
  p += 4 + sizeof POSIX_RENAME - 1;
  put_u32(p, (uint32_t)fl);
  memcpy(p + 4, from, fl);
  p += 4 + fl;
  put_u32(p, (uint32_t)tl);
  memcpy(p + 4, to, tl);
  rc = ext_send(s->ext, req, n);
  free(req);
  len = rc != 0 ? rc : ext_packet(s, &reply);
  if (len < 0) {
    s->ext_state = EXT_FAILED;
    return sftp_fail(L, s, "rename", from);
  }
  if (len < 9 || reply[0] != FXP_STATUS || get_u32(reply + 1) != id) {
    free(reply);
    s->ext_state = EXT_FAILED; /* out of step with the server: no more use */
    return ck_fail(L, "protocol", "rename %s: unexpected reply to posix-rename",
                   from);
  }
  {
    uint32_t st = get_u32(reply + 5);
    free(reply);
    if (st == FX_OK) {
      lua_pushboolean(L, 1);
      return 1;
    }
    if (st == FX_OP_UNSUPPORTED) {
      s->ext_state = EXT_NONE;
      lua_pushboolean(L, 0);
      return 1;
    }
    return sftp_fail_status(L, st, "rename", from);
  }
}

void sftp_ext_close(ck_session *s) {
  if (s->ext != NULL && libssh2_channel_free(s->ext) != 0) s->broken = 1;
  s->ext = NULL;
}

static const luaL_Reg ext_methods[] = {{"posix_rename", fs_posix_rename},
                                       {NULL, NULL}};

void sftp_ext_open(lua_State *L) {
  luaL_setfuncs(L, ext_methods, 0);
}
