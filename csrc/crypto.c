/*
 * crypto.c - OpenSSL mechanisms: random bytes, SHA-256, HMAC-SHA-256,
 * base64 / base64url, hex, constant-time compare, PKCE (RFC 7636 S256) and
 * AES-256-GCM seal/open.
 *
 * Conventions: misuse (wrong argument types, a key that is not 32 bytes)
 * raises; run-time failures return nil, code, message (ck_fail). OpenSSL's
 * error queue is folded into messages and then cleared. Buffers that held
 * key-derived state or plaintext are cleansed before they are released.
 * Scratch memory is a Lua userdata (collected even if a later push raises),
 * allocated before any OpenSSL object so no Lua error can leak one.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "connkit.h"

#define CK_KEY_LEN 32
#define CK_NONCE_LEN 12
#define CK_TAG_LEN 16
#define CK_SHA256_LEN 32

/* ------------------------------------------------------------------------ */
/* OpenSSL error queue                                                       */

/* Writes "what: reason; reason" into buf from OpenSSL's error queue and
 * clears the queue. Never includes data, only library reason strings. */
void ck_ssl_message(char *buf, size_t size, const char *what) {
  unsigned long e;
  size_t used;
  snprintf(buf, size, "%s", what);
  used = strlen(buf);
  while ((e = ERR_get_error()) != 0) {
    char reason[256];
    ERR_error_string_n(e, reason, sizeof reason);
    if (used + 3 < size) {
      snprintf(buf + used, size - used, "%s%s",
               used == strlen(what) ? ": " : "; ", reason);
      used = strlen(buf);
    }
  }
  ERR_clear_error();
}

/* Raises a Lua error "connkit: what: <openssl reasons>". */
static int ssl_raise(lua_State *L, const char *what) {
  char msg[768];
  ck_ssl_message(msg, sizeof msg, what);
  return luaL_error(L, "connkit: %s", msg);
}

/* ------------------------------------------------------------------------ */
/* Encodings (own code: EVP_DecodeBlock is lax about padding and length)     */

static const char B64_STD[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64_URL[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encodes n bytes of src into dst (room for 4 * ceil(n / 3) bytes); returns
 * the length written. pad: append '=' padding. */
static size_t b64_encode_buf(char *dst, const unsigned char *src, size_t n,
                             const char *alphabet, int pad) {
  size_t i, o = 0;
  for (i = 0; i + 2 < n; i += 3) {
    unsigned long v = ((unsigned long)src[i] << 16) |
                      ((unsigned long)src[i + 1] << 8) | src[i + 2];
    dst[o++] = alphabet[(v >> 18) & 63];
    dst[o++] = alphabet[(v >> 12) & 63];
    dst[o++] = alphabet[(v >> 6) & 63];
    dst[o++] = alphabet[v & 63];
  }
  if (n - i == 1) {
    unsigned long v = (unsigned long)src[i] << 16;
    dst[o++] = alphabet[(v >> 18) & 63];
    dst[o++] = alphabet[(v >> 12) & 63];
    if (pad) {
      dst[o++] = '=';
      dst[o++] = '=';
    }
  } else if (n - i == 2) {
    unsigned long v =
        ((unsigned long)src[i] << 16) | ((unsigned long)src[i + 1] << 8);
    dst[o++] = alphabet[(v >> 18) & 63];
    dst[o++] = alphabet[(v >> 12) & 63];
    dst[o++] = alphabet[(v >> 6) & 63];
    if (pad) dst[o++] = '=';
  }
  return o;
}

/* Value of one base64 character in the given alphabet, or -1. */
static int b64_value(int c, int url) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (!url && c == '+') return 62;
  if (!url && c == '/') return 63;
  if (url && c == '-') return 62;
  if (url && c == '_') return 63;
  return -1;
}

/* Strict decoder: padding optional but, when present, must complete the last
 * quantum; no whitespace; the unused low bits of the last symbol must be zero
 * (so each byte string has exactly one encoding). Writes into dst (room for
 * 3 * ceil(n / 4)) and returns the length, or -1 with *why set. */
static long b64_decode_buf(unsigned char *dst, const char *src, size_t n,
                           int url, const char **why) {
  size_t i, o = 0, data = n;
  unsigned long acc = 0;
  int bits = 0;
  while (data > 0 && src[data - 1] == '=')
    data--;
  if (n - data > 2) {
    *why = "too much padding";
    return -1;
  }
  if (data % 4 == 1) {
    *why = "bad length";
    return -1;
  }
  if (n != data && n % 4 != 0) {
    *why = "bad padding";
    return -1;
  }
  for (i = 0; i < data; i++) {
    int v = b64_value((unsigned char)src[i], url);
    if (v < 0) {
      *why = "invalid character";
      return -1;
    }
    acc = (acc << 6) | (unsigned long)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      dst[o++] = (unsigned char)((acc >> bits) & 0xff);
    }
  }
  if (bits > 0 && (acc & ((1UL << bits) - 1)) != 0) {
    *why = "non-zero trailing bits";
    return -1;
  }
  return (long)o;
}

/* Pushes the base64 (url: base64url) encoding of s. */
static void push_b64(lua_State *L, const unsigned char *s, size_t n, int url,
                     int pad) {
  char *dst = (char *)lua_newuserdatauv(L, 4 * ((n + 2) / 3) + 1, 0);
  size_t len = b64_encode_buf(dst, s, n, url ? B64_URL : B64_STD, pad);
  lua_pushlstring(L, dst, len);
  lua_remove(L, -2);
}

/* b64encode(s) -> string; b64url_encode(s) -> string without padding. */
static int crypto_b64encode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  push_b64(L, (const unsigned char *)s, n, 0, 1);
  return 1;
}

static int crypto_b64url_encode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  push_b64(L, (const unsigned char *)s, n, 1, 0);
  return 1;
}

/* Decodes argument 1; pushes the bytes or nil, "bad_base64", message. The
 * scratch buffer is cleansed: decoded data is often a key. */
static int b64decode_common(lua_State *L, int url) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  const char *why = NULL;
  size_t cap = 3 * ((n + 3) / 4) + 1;
  unsigned char *dst = (unsigned char *)lua_newuserdatauv(L, cap, 0);
  long len = b64_decode_buf(dst, s, n, url, &why);
  if (len < 0) {
    ck_cleanse(dst, cap);
    return ck_fail(L, "bad_base64", "%s: %s", url ? "base64url" : "base64",
                   why);
  }
  lua_pushlstring(L, (const char *)dst, (size_t)len);
  ck_cleanse(dst, cap);
  return 1;
}

static int crypto_b64decode(lua_State *L) {
  return b64decode_common(L, 0);
}
static int crypto_b64url_decode(lua_State *L) {
  return b64decode_common(L, 1);
}

/* hex(s) -> lower-case hex string. */
static int crypto_hex(lua_State *L) {
  static const char digits[] = "0123456789abcdef";
  size_t n, i;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  char *dst = (char *)lua_newuserdatauv(L, 2 * n + 1, 0);
  for (i = 0; i < n; i++) {
    dst[2 * i] = digits[s[i] >> 4];
    dst[2 * i + 1] = digits[s[i] & 15];
  }
  lua_pushlstring(L, dst, 2 * n);
  lua_remove(L, -2);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Random, hashes, compare                                                   */

/* random(n) -> n bytes from RAND_bytes; raises on failure. */
static int crypto_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  unsigned char *buf;
  luaL_argcheck(L, n >= 0 && n <= (1 << 20), 1,
                "byte count must be 0..1048576");
  buf = (unsigned char *)lua_newuserdatauv(L, (size_t)n + 1, 0);
  if (n > 0 && RAND_bytes(buf, (int)n) != 1)
    return ssl_raise(L, "RAND_bytes failed");
  lua_pushlstring(L, (const char *)buf, (size_t)n);
  ck_cleanse(buf, (size_t)n);
  return 1;
}

/* SHA-256 of n bytes into out (32 bytes); 1 on success. */
static int sha256_buf(const void *s, size_t n, unsigned char *out) {
  unsigned int len = 0;
  return EVP_Digest(s, n, out, &len, EVP_sha256(), NULL) == 1 &&
         len == CK_SHA256_LEN;
}

/* sha256(s) -> 32 raw bytes. */
static int crypto_sha256(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char md[CK_SHA256_LEN];
  if (!sha256_buf(s, n, md)) return ssl_raise(L, "sha256 failed");
  lua_pushlstring(L, (const char *)md, sizeof md);
  return 1;
}

/* hmac_sha256(key, s) -> 32 raw bytes. */
static int crypto_hmac_sha256(lua_State *L) {
  size_t kn, n;
  const char *key = luaL_checklstring(L, 1, &kn);
  const char *s = luaL_checklstring(L, 2, &n);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  /* HMAC() needs a non-NULL key pointer even when the key is empty. */
  if (HMAC(EVP_sha256(), kn ? key : "", (int)kn, (const unsigned char *)s, n,
           md, &len) == NULL)
    return ssl_raise(L, "hmac_sha256 failed");
  lua_pushlstring(L, (const char *)md, len);
  return 1;
}

/* ct_equal(a, b) -> boolean. Constant time in the content; strings of
 * different lengths are unequal at once (the length is not secret). */
static int crypto_ct_equal(lua_State *L) {
  size_t an, bn;
  const char *a = luaL_checklstring(L, 1, &an);
  const char *b = luaL_checklstring(L, 2, &bn);
  lua_pushboolean(L, an == bn && CRYPTO_memcmp(a, b, an) == 0);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* PKCE (RFC 7636)                                                           */

/* True when s is a valid code_verifier: 43-128 chars of [A-Za-z0-9-._~]. */
static int pkce_verifier_ok(const char *s, size_t n) {
  size_t i;
  if (n < 43 || n > 128) return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
          (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
          c == '~'))
      return 0;
  }
  return 1;
}

/* Pushes the S256 challenge of a verifier: base64url(sha256(verifier)). */
static void push_challenge(lua_State *L, const char *v, size_t n) {
  unsigned char md[CK_SHA256_LEN];
  if (!sha256_buf(v, n, md)) {
    ssl_raise(L, "sha256 failed");
    return;
  }
  push_b64(L, md, sizeof md, 1, 0);
}

/* pkce([nbytes]) -> verifier, challenge. The verifier is the base64url of
 * nbytes (default 32, 32..96) random bytes: 43..128 characters. */
static int crypto_pkce(lua_State *L) {
  lua_Integer nb = luaL_optinteger(L, 1, 32);
  unsigned char raw[96];
  char verifier[129];
  size_t vlen;
  luaL_argcheck(L, nb >= 32 && nb <= 96, 1, "random byte count must be 32..96");
  if (RAND_bytes(raw, (int)nb) != 1) return ssl_raise(L, "RAND_bytes failed");
  vlen = b64_encode_buf(verifier, raw, (size_t)nb, B64_URL, 0);
  ck_cleanse(raw, sizeof raw);
  lua_pushlstring(L, verifier, vlen);
  push_challenge(L, verifier, vlen);
  ck_cleanse(verifier, sizeof verifier);
  return 2;
}

/* pkce_challenge(verifier) -> S256 challenge; raises on an invalid verifier. */
static int crypto_pkce_challenge(lua_State *L) {
  size_t n;
  const char *v = luaL_checklstring(L, 1, &n);
  luaL_argcheck(
      L, pkce_verifier_ok(v, n), 1,
      "PKCE verifier must be 43-128 characters of A-Z a-z 0-9 - . _ ~");
  push_challenge(L, v, n);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* AES-256-GCM                                                               */

/* Checks argument i is a 32-byte key string; raises otherwise. */
static const unsigned char *check_key(lua_State *L, int i) {
  size_t n;
  const char *k = luaL_checklstring(L, i, &n);
  if (n != CK_KEY_LEN)
    luaL_argerror(L, i,
                  lua_pushfstring(L, "key must be 32 bytes (got %d)", (int)n));
  return (const unsigned char *)k;
}

/* Optional associated data at argument i: nil/none means empty. */
static const unsigned char *opt_aad(lua_State *L, int i, size_t *n) {
  if (lua_isnoneornil(L, i)) {
    *n = 0;
    return (const unsigned char *)"";
  }
  return (const unsigned char *)luaL_checklstring(L, i, n);
}

/* seal(key32, plaintext [, aad]) -> nonce(12) || ciphertext || tag(16).
 * A fresh random nonce per call. Raises only on misuse or OpenSSL failure. */
static int crypto_gcm_seal(lua_State *L) {
  const unsigned char *key = check_key(L, 1);
  size_t pn, an, total;
  const unsigned char *pt = (const unsigned char *)luaL_checklstring(L, 2, &pn);
  const unsigned char *aad = opt_aad(L, 3, &an);
  unsigned char *out;
  EVP_CIPHER_CTX *ctx;
  int len = 0, ok;
  luaL_argcheck(L, pn <= 0x7fffff00u && an <= 0x7fffff00u, 2, "data too large");
  total = CK_NONCE_LEN + pn + CK_TAG_LEN;
  out = (unsigned char *)lua_newuserdatauv(L, total, 0);
  if (RAND_bytes(out, CK_NONCE_LEN) != 1)
    return ssl_raise(L, "RAND_bytes failed");
  ctx = EVP_CIPHER_CTX_new();
  if (ctx == NULL) return ssl_raise(L, "seal: EVP_CIPHER_CTX_new failed");
  ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CK_NONCE_LEN, NULL) ==
           1 &&
       EVP_EncryptInit_ex(ctx, NULL, NULL, key, out) == 1 &&
       (an == 0 || EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)an) == 1) &&
       EVP_EncryptUpdate(ctx, out + CK_NONCE_LEN, &len, pt, (int)pn) == 1 &&
       (size_t)len == pn &&
       EVP_EncryptFinal_ex(ctx, out + CK_NONCE_LEN + pn, &len) == 1 &&
       len == 0 &&
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CK_TAG_LEN,
                           out + CK_NONCE_LEN + pn) == 1;
  EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
  if (!ok) return ssl_raise(L, "seal: AES-256-GCM encryption failed");
  lua_pushlstring(L, (const char *)out, total);
  return 1;
}

/* open(key32, sealed [, aad]) -> plaintext, or nil, "store_auth", message
 * when the data is truncated or does not authenticate (wrong key, wrong aad,
 * tampered). The plaintext scratch is cleansed after the string is pushed. */
static int crypto_gcm_open(lua_State *L) {
  const unsigned char *key = check_key(L, 1);
  size_t sn, an, cn;
  const unsigned char *sealed =
      (const unsigned char *)luaL_checklstring(L, 2, &sn);
  const unsigned char *aad = opt_aad(L, 3, &an);
  unsigned char *pt, tag[CK_TAG_LEN];
  EVP_CIPHER_CTX *ctx;
  int len = 0, ok, auth;
  if (sn < CK_NONCE_LEN + CK_TAG_LEN)
    return ck_fail(L, "store_auth", "open: sealed data truncated (%d bytes)",
                   (int)sn);
  luaL_argcheck(L, sn <= 0x7fffff00u && an <= 0x7fffff00u, 2, "data too large");
  cn = sn - CK_NONCE_LEN - CK_TAG_LEN;
  memcpy(tag, sealed + sn - CK_TAG_LEN, CK_TAG_LEN);
  pt = (unsigned char *)lua_newuserdatauv(L, cn + 1, 0);
  ctx = EVP_CIPHER_CTX_new();
  if (ctx == NULL) return ssl_raise(L, "open: EVP_CIPHER_CTX_new failed");
  ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CK_NONCE_LEN, NULL) ==
           1 &&
       EVP_DecryptInit_ex(ctx, NULL, NULL, key, sealed) == 1 &&
       (an == 0 || EVP_DecryptUpdate(ctx, NULL, &len, aad, (int)an) == 1) &&
       EVP_DecryptUpdate(ctx, pt, &len, sealed + CK_NONCE_LEN, (int)cn) == 1 &&
       (size_t)len == cn &&
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CK_TAG_LEN, tag) == 1;
  auth = ok && EVP_DecryptFinal_ex(ctx, pt + cn, &len) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) {
    ck_cleanse(pt, cn + 1);
    return ssl_raise(L, "open: AES-256-GCM setup failed");
  }
  if (!auth) {
    ck_cleanse(pt, cn + 1);
    ERR_clear_error();
    return ck_fail(L, "store_auth",
                   "open: authentication failed (wrong key, wrong associated "
                   "data, or tampered data)");
  }
  lua_pushlstring(L, (const char *)pt, cn);
  ck_cleanse(pt, cn + 1);
  return 1;
}

/* Adds the crypto functions to the module table on top of the stack. */
void crypto_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"random", crypto_random},
      {"sha256", crypto_sha256},
      {"hmac_sha256", crypto_hmac_sha256},
      {"b64encode", crypto_b64encode},
      {"b64decode", crypto_b64decode},
      {"b64url_encode", crypto_b64url_encode},
      {"b64url_decode", crypto_b64url_decode},
      {"hex", crypto_hex},
      {"ct_equal", crypto_ct_equal},
      {"pkce", crypto_pkce},
      {"pkce_challenge", crypto_pkce_challenge},
      {"seal", crypto_gcm_seal},
      {"open", crypto_gcm_open},
      {NULL, NULL},
  };
  luaL_setfuncs(L, funcs, 0);
}
