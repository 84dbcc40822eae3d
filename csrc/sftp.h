/*
 * sftp.h - what sftp.c (SSH session, host key, login) and sftp_fs.c (SFTP
 * operations, remote file and directory handles) share.
 *
 * Ownership: a session userdata owns the socket, the LIBSSH2_SESSION and the
 * LIBSSH2_SFTP. Every open remote file or directory is a userdata that keeps
 * its session alive through user value 1 and sits in the session's intrusive
 * list, so closing the session can close its handles first.
 */
#ifndef CONNKIT_SFTP_H
#define CONNKIT_SFTP_H

#include <stdint.h>

#include <libssh2.h>
#include <libssh2_sftp.h>

#include "connkit.h"

#define CK_SSH_SESSION "connkit.ssh.session"
#define CK_SFTP_FILE "connkit.sftp.file"
#define CK_SFTP_DIR "connkit.sftp.dir"

typedef struct ck_handle ck_handle;

typedef struct ck_session {
  LIBSSH2_SESSION *ssh; /* NULL once closed */
  LIBSSH2_SFTP *sftp;   /* NULL until sftp_init */
  int sock;             /* -1 when none */
  long timeout_ms;
  int broken;           /* a timeout or transport error: no clean shutdown */
  const char *kbd_password; /* only while keyboard-interactive runs */
  size_t kbd_len;
  ck_handle *handles; /* open files and directories */
  LIBSSH2_CHANNEL *ext; /* the SFTP channel for extensions (sftp_ext.c) */
  int ext_state;        /* EXT_UNKNOWN, EXT_READY, EXT_NONE, EXT_FAILED */
  uint32_t ext_id;      /* the last request id sent on ext */
  int busy; /* a part thread of a parallel transfer uses it (sftp_parallel.c):
               every use from Lua raises meanwhile */
  LIBSSH2_SFTP_HANDLE **deferred; /* handles collected while busy: closed */
  int ndeferred;                  /* once it is not (sftp_close_deferred) */
} ck_session;

enum { EXT_UNKNOWN = 0, EXT_READY, EXT_NONE, EXT_FAILED };

struct ck_handle {
  LIBSSH2_SFTP_HANDLE *h; /* NULL once closed */
  ck_session *s;          /* NULL once closed */
  ck_handle *prev, *next;
  char *buf; /* read scratch, files only */
  size_t cap;
};

/* Returns the session at index i; raises if it is not one, or is closed, or
 * (need_sftp) has no SFTP channel yet. */
CK_HIDDEN ck_session *sftp_check_session(lua_State *L, int i, int need_sftp);

/* Pushes nil, code, message for the last libssh2 error of the session, the
 * message prefixed with what was done and, when not NULL, the path. For an
 * SFTP status the code is its stable name (no_such_file, ...). */
CK_HIDDEN int sftp_fail(lua_State *L, ck_session *s, const char *what,
                        const char *path);

/* Pushes nil, code, message for SFTP status st (no_such_file, ...). */
CK_HIDDEN int sftp_fail_status(lua_State *L, unsigned long st, const char *what,
                               const char *path);

/* Frees the extension channel, if any (sftp_ext.c); a failure breaks the
 * session. */
CK_HIDDEN void sftp_ext_close(ck_session *s);

/* Adds the extension operations (posix_rename) to the session method table
 * on top of the stack (sftp_ext.c). */
CK_HIDDEN void sftp_ext_open(lua_State *L);

/* Closes the handles collected while the session was busy. */
CK_HIDDEN void sftp_close_deferred(ck_session *s);

/* Closes one handle (idempotent) and unlinks it from its session. */
CK_HIDDEN void sftp_handle_close(ck_handle *fh);

/* Decodes base64 into out (size >= 3/4 of len); returns bytes or -1. */
CK_HIDDEN int sftp_base64_decode(const char *in, size_t len, unsigned char *out);

/* core.ssh_key_info(path | nil, data | nil, passphrase | nil): what a private
 * key file holds, without using it (sftp_key.c). */
CK_HIDDEN int sftp_key_info(lua_State *L);

/* Adds core.sftp_pump_parallel to the module table on top of the stack
 * (sftp_parallel.c). */
CK_HIDDEN void sftp_parallel_open(lua_State *L);

/* Adds the SFTP methods to the session method table on top of the stack and
 * registers the file and directory classes. */
CK_HIDDEN void sftp_fs_open(lua_State *L);
/* Calls the progress function at stack index fn (sftp_fs.c); 0 to go on. */
CK_HIDDEN int sftp_report_progress(lua_State *L, int fn, lua_Integer done,
                                   lua_Integer total);

#endif /* CONNKIT_SFTP_H */
