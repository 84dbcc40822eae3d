/*
 * sftp_key.c - what a private key file holds, read before libssh2 uses it:
 * a private or a public key, its container (OpenSSH, PEM, PKCS#8), its type,
 * whether it is encrypted and with which cipher, and for PEM keys whether
 * the passphrase opens it. libssh2 reports a missing file, a public key, a
 * format it cannot read and a wrong passphrase with one generic error;
 * lua/connkit/sftp/login.lua turns these facts into the real cause.
 *
 * Facts only, no policy. Every copy of key bytes made here is cleansed.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "sftp.h"

#define KEY_FILE_MAX (1u << 20) /* no key file is this big */

/* Reads a whole key file into a NUL-terminated malloc'd buffer (cleanse
 * before free). Returns NULL with errno set (EISDIR for a directory, EFBIG
 * past KEY_FILE_MAX). */
static char *read_key_file(const char *path, size_t *len, size_t *cap) {
  struct stat st;
  char *buf;
  size_t n = 0, size;
  int fd = open(path, O_RDONLY | O_CLOEXEC), err;
  if (fd < 0) return NULL;
  if (fstat(fd, &st) != 0) goto fail;
  if (S_ISDIR(st.st_mode)) {
    errno = EISDIR;
    goto fail;
  }
  if (st.st_size > (off_t)KEY_FILE_MAX) {
    errno = EFBIG;
    goto fail;
  }
  size = (size_t)st.st_size + 1;
  buf = (char *)malloc(size);
  if (buf == NULL) goto fail;
  while (n < size - 1) {
    ssize_t r = read(fd, buf + n, size - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      err = errno;
      ck_cleanse(buf, size);
      free(buf);
      close(fd);
      errno = err;
      return NULL;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  close(fd);
  buf[n] = '\0';
  *len = n;
  *cap = size;
  return buf;
fail:
  err = errno;
  close(fd);
  errno = err;
  return NULL;
}

static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

/* Reads the length-prefixed string at *off of raw (n bytes); NULL when it
 * does not fit. */
static const unsigned char *get_string(const unsigned char *raw, size_t n,
                                       size_t *off, uint32_t *len) {
  const unsigned char *s;
  if (*off + 4 > n) return NULL;
  *len = get_u32(raw + *off);
  if (*len > n - *off - 4) return NULL;
  s = raw + *off + 4;
  *off += 4 + *len;
  return s;
}

static void set_string(lua_State *L, const char *field, const void *s,
                       size_t len) {
  lua_pushlstring(L, (const char *)s, len);
  lua_setfield(L, -2, field);
}

static void set_literal(lua_State *L, const char *field, const char *s) {
  lua_pushstring(L, s);
  lua_setfield(L, -2, field);
}

static void set_bool(lua_State *L, const char *field, int v) {
  lua_pushboolean(L, v);
  lua_setfield(L, -2, field);
}

/* The key type named by an SSH key type string. */
static const char *ssh_type_name(const unsigned char *t, uint32_t l) {
  if (l >= 3 && memcmp(t, "sk-", 3) == 0) return "sk";
  if (l == 7 && memcmp(t, "ssh-rsa", 7) == 0) return "rsa";
  if (l == 11 && memcmp(t, "ssh-ed25519", 11) == 0) return "ed25519";
  if (l > 6 && memcmp(t, "ecdsa-", 6) == 0) return "ecdsa";
  if (l == 7 && memcmp(t, "ssh-dss", 7) == 0) return "dsa";
  return "unknown";
}

/* The clear header of an OpenSSH private key ("openssh-key-v1", cipher,
 * kdf, kdf options, key count, first public key): sets cipher, encrypted
 * and type on the table on top of the stack. */
static void openssh_facts(lua_State *L, const char *body) {
  const char *end = strstr(body, "-----END");
  char b64[1024];
  unsigned char raw[800];
  size_t k = 0, off = 15;
  uint32_t l = 0;
  const unsigned char *cipher, *pub;
  const char *type = "unknown";
  int n;
  if (end == NULL) end = body + strlen(body);
  for (; body < end && k < sizeof b64 - 4; body++)
    if (isalnum((unsigned char)*body) || *body == '+' || *body == '/' ||
        *body == '=')
      b64[k++] = *body;
  k -= k % 4;
  n = sftp_base64_decode(b64, k, raw);
  ck_cleanse(b64, sizeof b64);
  if (n < 15 || memcmp(raw, "openssh-key-v1", 15) != 0) {
    set_bool(L, "readable", 0);
    goto done;
  }
  cipher = get_string(raw, (size_t)n, &off, &l);
  if (cipher == NULL || l > 64) {
    set_bool(L, "readable", 0);
    goto done;
  }
  set_string(L, "cipher", cipher, l);
  set_bool(L, "encrypted", !(l == 4 && memcmp(cipher, "none", 4) == 0));
  if (get_string(raw, (size_t)n, &off, &l) == NULL ||  /* kdf */
      get_string(raw, (size_t)n, &off, &l) == NULL) {  /* kdf options */
    set_bool(L, "readable", 0);
    goto done;
  }
  off += 4; /* number of keys */
  pub = get_string(raw, (size_t)n, &off, &l);
  if (pub != NULL) {
    size_t poff = 0;
    const unsigned char *t = get_string(pub, l, &poff, &l);
    if (t != NULL) type = ssh_type_name(t, l);
  }
done:
  set_literal(L, "type", type);
  ck_cleanse(raw, sizeof raw);
}

static int pem_pass(char *buf, int size, int rw, void *u) {
  size_t len = u ? strlen((const char *)u) : 0;
  (void)rw;
  if (len == 0 || (int)len > size) return 0;
  memcpy(buf, u, len);
  return (int)len;
}

/* A PEM or PKCS#8 private key: OpenSSL reads it (with the passphrase when
 * encrypted) to learn its type and whether the passphrase opens it. */
static void pem_facts(lua_State *L, const char *data, size_t len,
                      const char *pass, int encrypted) {
  BIO *bio = BIO_new_mem_buf(data, (int)len);
  EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, pem_pass,
                                               (void *)(uintptr_t)pass)
                     : NULL;
  const char *t = "unknown";
  if (pk != NULL) {
    switch (EVP_PKEY_base_id(pk)) {
      case EVP_PKEY_RSA: t = "rsa"; break;
      case EVP_PKEY_EC: t = "ecdsa"; break;
      case EVP_PKEY_ED25519: t = "ed25519"; break;
      case EVP_PKEY_DSA: t = "dsa"; break;
      default: break;
    }
    EVP_PKEY_free(pk);
  }
  ERR_clear_error(); /* no stale OpenSSL error for the next TLS user */
  BIO_free(bio);
  set_bool(L, "encrypted", encrypted);
  set_literal(L, "type", t);
  if (encrypted && pass != NULL) set_bool(L, "passphrase_ok", pk != NULL);
  if (!encrypted) set_bool(L, "readable", pk != NULL);
}

/* Is p the start of an OpenSSH public key line ("ssh-ed25519 AAAA...")? */
static int public_key_line(const char *p) {
  const char *q = p;
  while (isalnum((unsigned char)*q) || *q == '-' || *q == '@' || *q == '.')
    q++;
  if (q == p || (*q != ' ' && *q != '\t')) return 0;
  while (*q == ' ' || *q == '\t') q++;
  return strncmp(q, "AAAA", 4) == 0;
}

static int starts(const char *p, const char *prefix) {
  return strncmp(p, prefix, strlen(prefix)) == 0;
}

/* Pushes the facts table for the key text data (NUL-terminated). */
static void key_facts(lua_State *L, const char *data, size_t len,
                      const char *pass) {
  const char *p = data;
  lua_createtable(L, 0, 6);
  if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) p += 3; /* UTF-8 BOM */
  while (isspace((unsigned char)*p)) p++;
  if (*p == '\0') {
    set_literal(L, "kind", "empty");
  } else if (starts(p, "-----BEGIN OPENSSH PRIVATE KEY-----")) {
    set_literal(L, "kind", "private");
    set_literal(L, "format", "openssh");
    openssh_facts(L, p + 35);
  } else if (starts(p, "-----BEGIN RSA PRIVATE KEY-----") ||
             starts(p, "-----BEGIN EC PRIVATE KEY-----") ||
             starts(p, "-----BEGIN DSA PRIVATE KEY-----")) {
    set_literal(L, "kind", "private");
    set_literal(L, "format", "pem");
    pem_facts(L, data, len, pass, strstr(p, "Proc-Type: 4,ENCRYPTED") != NULL);
  } else if (starts(p, "-----BEGIN PRIVATE KEY-----") ||
             starts(p, "-----BEGIN ENCRYPTED PRIVATE KEY-----")) {
    set_literal(L, "kind", "private");
    set_literal(L, "format", "pkcs8");
    pem_facts(L, data, len, pass, starts(p, "-----BEGIN ENCRYPTED"));
  } else if (public_key_line(p) || starts(p, "-----BEGIN PUBLIC KEY-----") ||
             starts(p, "-----BEGIN RSA PUBLIC KEY-----") ||
             starts(p, "---- BEGIN SSH2 PUBLIC KEY ----")) {
    set_literal(L, "kind", "public");
  } else if (starts(p, "PuTTY-User-Key-File-")) {
    set_literal(L, "kind", "putty");
  } else if (starts(p, "-----BEGIN CERTIFICATE-----")) {
    set_literal(L, "kind", "certificate");
  } else {
    set_literal(L, "kind", "unknown");
  }
}

/* core.ssh_key_info(path | nil, data | nil, passphrase | nil) -> facts |
 * nil, "key_file", message. facts: kind ("private" | "public" | "putty" |
 * "certificate" | "empty" | "unknown"); for private keys format ("openssh"
 * | "pem" | "pkcs8"), type ("ed25519" | "ecdsa" | "rsa" | "dsa" | "sk" |
 * "unknown"), encrypted, cipher (OpenSSH format), passphrase_ok (encrypted
 * PEM/PKCS#8 with a passphrase given: does it open the key?), readable
 * (false when the container is damaged). The message names the path only. */
int sftp_key_info(lua_State *L) {
  const char *path = luaL_optstring(L, 1, NULL);
  size_t dl = 0;
  const char *data = luaL_optlstring(L, 2, NULL, &dl);
  const char *pass = luaL_optstring(L, 3, NULL);
  if (path != NULL) {
    size_t n = 0, cap = 0;
    char *buf = read_key_file(path, &n, &cap);
    if (buf == NULL)
      return ck_fail(L, "key_file", "cannot read the private key file %s: %s",
                     path, strerror(errno));
    key_facts(L, buf, n, pass);
    ck_cleanse(buf, cap);
    free(buf);
    return 1;
  }
  if (data == NULL) return luaL_error(L, "ssh_key_info needs a path or data");
  key_facts(L, data, dl, pass);
  return 1;
}
