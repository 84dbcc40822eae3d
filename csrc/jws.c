/*
 * jws.c - JWS (RFC 7515/7518) signatures and the keys they use, all through
 * OpenSSL 3: RS256, PS256, ES256, EdDSA (Ed25519) with EVP_DigestSign /
 * EVP_DigestVerify, HS256 with HMAC() and CRYPTO_memcmp. Keys are read from
 * PEM (private: PKCS#8 or traditional, optionally encrypted; public: SPKI,
 * PKCS#1 RSA, or a certificate) or built from a JWK's public parameters with
 * EVP_PKEY_fromdata. lua/connkit/auth/jwt.lua holds the policy (which alg,
 * which key, which claims); this file only does the arithmetic.
 *
 *   core.pkey_load(pem [, password]) -> pkey | nil, "key", message
 *   core.pkey_from_jwk(kty, a, b, crv) -> pkey | nil, "key", message
 *       (raw bytes: RSA n, e; EC x, y with crv "P-256"; OKP x, crv "Ed25519")
 *   pkey:params() -> kty, crv|nil, a, b|nil, is_private, bits
 *   core.pkey_generate(kty [, bits]) -> a new private pkey
 *   pkey:public_pem() -> SubjectPublicKeyInfo PEM text
 *   pkey:private_pem() -> PKCS #8 PEM text (unencrypted)
 *   core.jws_sign(alg, key, input) -> signature | nil, "key", message
 *   core.jws_verify(alg, key, input, signature) -> boolean
 *                                                | nil, "key", message
 *       (key: a pkey, or the secret string for HS256)
 *   core.ecdsa_der_to_raw(der) / core.ecdsa_raw_to_der(raw): the two ES256
 *       signature forms (for tests and for callers that hold DER signatures)
 *
 * Messages never carry key bytes or a password: only what was being done and
 * OpenSSL's reason strings. Every buffer that held a password or private
 * parameters is cleansed. The pkey userdata exists (marked empty) before any
 * OpenSSL object is made, so a Lua error on the way leaks nothing.
 */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "connkit.h"

#define PKEY_CLASS "connkit.pkey"
#define P256_LEN 32        /* bytes of a P-256 coordinate and of r, s */
#define ED25519_LEN 32     /* bytes of an Ed25519 public key */
#define RSA_MIN_BITS 2048  /* RFC 7518 3.3 and 3.5 */
#define PEM_MAX (1u << 20) /* no key is this big */
#define JWS_INPUT_MAX 0x7fffffffu

typedef struct {
  EVP_PKEY *pk;
  int priv; /* holds the private part */
} ck_pkey;

enum alg { ALG_RS256, ALG_PS256, ALG_ES256, ALG_EDDSA, ALG_HS256 };

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

/* The alg named at argument i; raises on one this file does not know (the
 * Lua side refuses unknown algs of a token before it gets here). */
static enum alg check_alg(lua_State *L, int i) {
  static const char *const names[] = {"RS256", "PS256", "ES256",
                                      "EdDSA", "HS256", NULL};
  return (enum alg)luaL_checkoption(L, i, NULL, names);
}

static ck_pkey *check_pkey(lua_State *L, int i) {
  ck_pkey *k = (ck_pkey *)luaL_checkudata(L, i, PKEY_CLASS);
  if (k->pk == NULL) luaL_argerror(L, i, "the key is empty");
  return k;
}

/* Pushes an empty pkey userdata (freed by __gc whatever happens next). */
static ck_pkey *new_pkey(lua_State *L) {
  ck_pkey *k = (ck_pkey *)lua_newuserdatauv(L, sizeof *k, 0);
  k->pk = NULL;
  k->priv = 0;
  luaL_setmetatable(L, PKEY_CLASS);
  return k;
}

/* The family of a key: "RSA", "EC" (P-256 only), "OKP" (Ed25519), or NULL
 * for anything else (other curves, DSA, X25519, ...). */
static const char *key_kty(EVP_PKEY *pk) {
  if (EVP_PKEY_is_a(pk, "RSA")) return "RSA";
  if (EVP_PKEY_is_a(pk, "ED25519")) return "OKP";
  if (EVP_PKEY_is_a(pk, "EC")) {
    char group[64];
    size_t n = 0;
    if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                       sizeof group, &n) == 1 &&
        strcmp(group, "prime256v1") == 0)
      return "EC";
  }
  return NULL;
}

/* True when the key holds its private part. */
static int key_has_private(EVP_PKEY *pk) {
  BIGNUM *bn = NULL;
  size_t n = 0;
  int yes = 0;
  if (EVP_PKEY_is_a(pk, "RSA"))
    yes = EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_D, &bn) == 1;
  else if (EVP_PKEY_is_a(pk, "EC"))
    yes = EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_PRIV_KEY, &bn) == 1;
  else if (EVP_PKEY_is_a(pk, "ED25519"))
    yes = EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PRIV_KEY, NULL, 0,
                                          &n) == 1 &&
          n > 0;
  BN_clear_free(bn);
  ERR_clear_error();
  return yes;
}

/* ck_fail with OpenSSL's reasons (library strings, never data) appended. */
static int ssl_fail(lua_State *L, const char *code, const char *what) {
  char msg[768];
  ck_ssl_message(msg, sizeof msg, what);
  return ck_fail(L, code, "%s", msg);
}

/* Whether key k fits alg; NULL or why not. */
static const char *alg_key_mismatch(enum alg a, EVP_PKEY *pk) {
  const char *kty = key_kty(pk);
  switch (a) {
  case ALG_RS256:
  case ALG_PS256:
    if (kty == NULL || strcmp(kty, "RSA") != 0) return "needs an RSA key";
    if (EVP_PKEY_get_bits(pk) < RSA_MIN_BITS)
      return "needs an RSA key of 2048 bits or more";
    return NULL;
  case ALG_ES256:
    return kty != NULL && strcmp(kty, "EC") == 0 ? NULL
                                                 : "needs an EC P-256 key";
  case ALG_EDDSA:
    return kty != NULL && strcmp(kty, "OKP") == 0 ? NULL
                                                  : "needs an Ed25519 key";
  case ALG_HS256:
    return "needs a secret, not a public or private key";
  }
  return "unknown alg";
}

/* ------------------------------------------------------------------------ */
/* ES256: DER ECDSA-Sig-Value <-> JWS r || s (RFC 7518 3.4)                  */

/* DER signature -> 64 bytes r || s in out; 1 on success. */
static int ecdsa_der_to_raw(const unsigned char *der, size_t n,
                            unsigned char out[2 * P256_LEN]) {
  const unsigned char *p = der;
  ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)n);
  const BIGNUM *r, *s;
  int ok;
  if (sig == NULL) return 0;
  ECDSA_SIG_get0(sig, &r, &s);
  ok = p == der + n && BN_bn2binpad(r, out, P256_LEN) == P256_LEN &&
       BN_bn2binpad(s, out + P256_LEN, P256_LEN) == P256_LEN;
  ECDSA_SIG_free(sig);
  return ok;
}

/* 64 bytes r || s -> a new DER buffer (OPENSSL_free it) in *der; returns
 * its length, or 0. */
static int ecdsa_raw_to_der(const unsigned char raw[2 * P256_LEN],
                            unsigned char **der) {
  ECDSA_SIG *sig = ECDSA_SIG_new();
  BIGNUM *r = BN_bin2bn(raw, P256_LEN, NULL);
  BIGNUM *s = BN_bin2bn(raw + P256_LEN, P256_LEN, NULL);
  int n = 0;
  *der = NULL;
  if (sig != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(sig, r, s) == 1) {
    r = s = NULL; /* owned by sig now */
    n = i2d_ECDSA_SIG(sig, der);
    if (n <= 0) n = 0;
  }
  BN_free(r);
  BN_free(s);
  ECDSA_SIG_free(sig);
  return n;
}

/* ecdsa_der_to_raw(der) -> 64 bytes | nil, "key", message */
static int jws_ecdsa_der_to_raw(lua_State *L) {
  size_t n;
  const char *der = luaL_checklstring(L, 1, &n);
  unsigned char raw[2 * P256_LEN];
  if (!ecdsa_der_to_raw((const unsigned char *)der, n, raw)) {
    ERR_clear_error();
    return ck_fail(L, "key", "not a DER ECDSA P-256 signature");
  }
  lua_pushlstring(L, (const char *)raw, sizeof raw);
  return 1;
}

/* ecdsa_raw_to_der(raw64) -> DER | nil, "key", message */
static int jws_ecdsa_raw_to_der(lua_State *L) {
  size_t n;
  const char *raw = luaL_checklstring(L, 1, &n);
  unsigned char *der;
  int len;
  if (n != 2 * P256_LEN)
    return ck_fail(L, "key", "an ES256 signature is 64 bytes, not %d", (int)n);
  len = ecdsa_raw_to_der((const unsigned char *)raw, &der);
  if (len == 0) return ssl_fail(L, "key", "cannot encode the signature");
  lua_pushlstring(L, (const char *)der, (size_t)len);
  OPENSSL_free(der);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Loading keys                                                              */

typedef struct {
  const char *pw;
  size_t len;
  int asked; /* the key is encrypted: the callback was called */
} pw_state;

/* OpenSSL's PEM password callback: hands over the caller's password (never
 * prompts on a terminal); no password gives -1, which fails the decryption. */
static int pw_callback(char *buf, int size, int rwflag, void *u) {
  pw_state *st = (pw_state *)u;
  (void)rwflag;
  st->asked = 1;
  if (st->pw == NULL || size <= 0 || st->len > (size_t)size) return -1;
  memcpy(buf, st->pw, st->len);
  return (int)st->len;
}

/* Decodes PEM text into *pk with OpenSSL's decoders for the given selection
 * (a private key pair, or a public key); 1 on success. */
static int decode_pem(const char *pem, size_t n, int selection, pw_state *pw,
                      EVP_PKEY **pk) {
  const unsigned char *data = (const unsigned char *)pem;
  size_t left = n;
  int ok;
  OSSL_DECODER_CTX *dctx = OSSL_DECODER_CTX_new_for_pkey(pk, "PEM", NULL, NULL,
                                                         selection, NULL, NULL);
  if (dctx == NULL) return 0;
  ok = OSSL_DECODER_CTX_set_pem_password_cb(dctx, pw_callback, pw) == 1 &&
       OSSL_DECODER_from_data(dctx, &data, &left) == 1 && *pk != NULL;
  OSSL_DECODER_CTX_free(dctx);
  return ok;
}

/* The public key of the first PEM certificate in the text, or NULL. */
static EVP_PKEY *cert_public_key(const char *pem, size_t n) {
  BIO *bio = BIO_new_mem_buf(pem, (int)n);
  X509 *cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
  EVP_PKEY *pk = cert ? X509_get_pubkey(cert) : NULL;
  X509_free(cert);
  BIO_free(bio);
  return pk;
}

/* pkey_load(pem [, password]) -> pkey | nil, "key", message.
 * A private key (PKCS#8, traditional RSA/EC, encrypted with the password),
 * else a public key (SPKI or PKCS#1 RSA), else a certificate's public key.
 * Only RSA, EC P-256 and Ed25519 keys are accepted. */
static int jws_pkey_load(lua_State *L) {
  size_t n, pwn = 0;
  const char *pem = luaL_checklstring(L, 1, &n);
  const char *pw = luaL_optlstring(L, 2, NULL, &pwn);
  pw_state st;
  ck_pkey *k;
  if (n > PEM_MAX) return ck_fail(L, "key", "key text larger than 1 MiB");
  k = new_pkey(L);
  st.pw = pw;
  st.len = pwn;
  st.asked = 0;
  if (decode_pem(pem, n, EVP_PKEY_KEYPAIR, &st, &k->pk) &&
      key_has_private(k->pk)) {
    k->priv = 1;
  } else {
    EVP_PKEY_free(k->pk);
    k->pk = NULL;
    if (st.asked) {
      ERR_clear_error();
      return ck_fail(L, "key",
                     pw == NULL ? "the private key is encrypted and no "
                                  "password was given"
                                : "cannot decrypt the private key: wrong "
                                  "password");
    }
    if (!decode_pem(pem, n, EVP_PKEY_PUBLIC_KEY, &st, &k->pk)) {
      EVP_PKEY_free(k->pk);
      k->pk = cert_public_key(pem, n);
    }
    if (k->pk == NULL)
      return ssl_fail(L, "key",
                      "not a PEM private key, public key or certificate");
  }
  ERR_clear_error();
  if (key_kty(k->pk) == NULL) {
    EVP_PKEY_free(k->pk);
    k->pk = NULL;
    return ck_fail(L, "key",
                   "unsupported key type (RSA, EC P-256 and Ed25519 are)");
  }
  return 1;
}

/* An RSA public key's n and e checked without randomness: both odd,
 * 3 <= e < n. OpenSSL's public check for RSA (SP 800-56B) runs Miller-Rabin
 * with random bases on n, so a crafted n would load on one try and be
 * refused on the next (the fuzzer found one); a bad n only makes signatures
 * fail to verify, so the deterministic part is what is worth checking. */
static int rsa_public_ok(const BIGNUM *n, const BIGNUM *e) {
  return BN_is_odd(n) && BN_is_odd(e) && !BN_is_one(e) && BN_cmp(e, n) < 0;
}

/* Builds a public key of type name from params into *pk; 1 on success. */
static int pkey_fromdata(const char *name, OSSL_PARAM_BLD *bld, EVP_PKEY **pk) {
  OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, name, NULL);
  int ok = params != NULL && ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1 &&
           EVP_PKEY_fromdata(ctx, pk, EVP_PKEY_PUBLIC_KEY, params) == 1;
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  if (ok && strcmp(name, "RSA") != 0) { /* a point off the curve, ... */
    EVP_PKEY_CTX *check = EVP_PKEY_CTX_new_from_pkey(NULL, *pk, NULL);
    ok = check != NULL && EVP_PKEY_public_check(check) == 1;
    EVP_PKEY_CTX_free(check);
  }
  return ok;
}

/* pkey_from_jwk(kty, a, b, crv) -> pkey | nil, "key", message. The raw
 * (base64url-decoded) public parameters of a JWK: "RSA" n, e; "EC" x, y
 * (32 bytes each, crv "P-256"); "OKP" x (32 bytes, crv "Ed25519"). */
static int jws_pkey_from_jwk(lua_State *L) {
  static const char *const ktys[] = {"RSA", "EC", "OKP", NULL};
  int kty = luaL_checkoption(L, 1, NULL, ktys);
  size_t an, bn = 0;
  const unsigned char *a = (const unsigned char *)luaL_checklstring(L, 2, &an);
  const unsigned char *b =
      (const unsigned char *)luaL_optlstring(L, 3, NULL, &bn);
  const char *crv = luaL_optstring(L, 4, "");
  unsigned char point[1 + 2 * P256_LEN];
  OSSL_PARAM_BLD *bld;
  BIGNUM *n = NULL, *e = NULL;
  const char *name = NULL;
  ck_pkey *k;
  int ok = 0;
  if (kty == 0 && (b == NULL || an == 0 || bn == 0 || an > 2048 || bn > 8))
    return ck_fail(L, "key", "JWK RSA n or e missing or of a bad size");
  if (kty == 1 && (strcmp(crv, "P-256") != 0 || b == NULL || an != P256_LEN ||
                   bn != P256_LEN))
    return ck_fail(L, "key", "JWK EC key: crv must be P-256 with 32-byte x, y");
  if (kty == 2 && (strcmp(crv, "Ed25519") != 0 || an != ED25519_LEN))
    return ck_fail(L, "key", "JWK OKP key: crv must be Ed25519 with 32-byte x");
  k = new_pkey(L);
  bld = OSSL_PARAM_BLD_new();
  if (bld == NULL) return ssl_fail(L, "key", "cannot build the JWK key");
  if (kty == 0) {
    name = "RSA";
    n = BN_bin2bn(a, (int)an, NULL);
    e = BN_bin2bn(b, (int)bn, NULL);
    ok = n != NULL && e != NULL && rsa_public_ok(n, e) &&
         OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) == 1 &&
         OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) == 1;
  } else if (kty == 1) {
    name = "EC";
    point[0] = 0x04; /* uncompressed: 04 || x || y */
    memcpy(point + 1, a, P256_LEN);
    memcpy(point + 1 + P256_LEN, b, P256_LEN);
    ok = OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                         "prime256v1", 0) == 1 &&
         OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point,
                                          sizeof point) == 1;
  } else {
    name = "ED25519";
    ok = OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, a,
                                          an) == 1;
  }
  ok = ok && pkey_fromdata(name, bld, &k->pk);
  OSSL_PARAM_BLD_free(bld);
  BN_free(n);
  BN_free(e);
  if (!ok) {
    EVP_PKEY_free(k->pk);
    k->pk = NULL;
    return ssl_fail(L, "key", "the JWK is not a valid public key");
  }
  return 1;
}

/* pkey_generate(kty [, bits]) -> a new private key: "EC" (P-256), "OKP"
 * (Ed25519) or "RSA" (bits 2048..8192, default 2048). */
static int jws_pkey_generate(lua_State *L) {
  static const char *const ktys[] = {"RSA", "EC", "OKP", NULL};
  int kty = luaL_checkoption(L, 1, NULL, ktys);
  lua_Integer bits = luaL_optinteger(L, 2, RSA_MIN_BITS);
  ck_pkey *k;
  luaL_argcheck(L, bits >= RSA_MIN_BITS && bits <= 8192, 2,
                "RSA key size must be 2048..8192 bits");
  k = new_pkey(L);
  if (kty == 0)
    k->pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
  else if (kty == 1)
    k->pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  else
    k->pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  if (k->pk == NULL) {
    char msg[512];
    ck_ssl_message(msg, sizeof msg, "key generation failed");
    return luaL_error(L, "connkit: %s", msg);
  }
  k->priv = 1;
  return 1;
}

/* ------------------------------------------------------------------------ */
/* pkey methods                                                              */

/* Pushes the big-endian bytes of an integer parameter (padded to pad bytes
 * when pad > 0); 1 on success. */
static int push_bn_param(lua_State *L, EVP_PKEY *pk, const char *param,
                         int pad) {
  BIGNUM *bn = NULL;
  unsigned char buf[2048];
  int len;
  if (EVP_PKEY_get_bn_param(pk, param, &bn) != 1) return 0;
  len = pad > 0
            ? BN_bn2binpad(bn, buf, pad)
            : (BN_num_bytes(bn) <= (int)sizeof buf ? BN_bn2bin(bn, buf) : -1);
  BN_free(bn);
  if (len < 0) return 0;
  lua_pushlstring(L, (const char *)buf, (size_t)len);
  return 1;
}

/* pkey:params() -> kty, crv|nil, a, b|nil, is_private, bits: the public
 * parameters as raw bytes (RSA n, e; EC x, y; OKP x), for the JWK. */
static int pkey_params(lua_State *L) {
  ck_pkey *k = check_pkey(L, 1);
  const char *kty = key_kty(k->pk);
  int ok;
  lua_settop(L, 1);
  if (kty == NULL) return luaL_error(L, "connkit: unsupported key type");
  lua_pushstring(L, kty);
  if (strcmp(kty, "RSA") == 0) {
    lua_pushnil(L);
    ok = push_bn_param(L, k->pk, OSSL_PKEY_PARAM_RSA_N, 0) &&
         push_bn_param(L, k->pk, OSSL_PKEY_PARAM_RSA_E, 0);
  } else if (strcmp(kty, "EC") == 0) {
    lua_pushliteral(L, "P-256");
    ok = push_bn_param(L, k->pk, OSSL_PKEY_PARAM_EC_PUB_X, P256_LEN) &&
         push_bn_param(L, k->pk, OSSL_PKEY_PARAM_EC_PUB_Y, P256_LEN);
  } else {
    unsigned char x[ED25519_LEN];
    size_t n = 0;
    lua_pushliteral(L, "Ed25519");
    ok = EVP_PKEY_get_octet_string_param(k->pk, OSSL_PKEY_PARAM_PUB_KEY, x,
                                         sizeof x, &n) == 1 &&
         n == sizeof x;
    if (ok) lua_pushlstring(L, (const char *)x, n);
    lua_pushnil(L);
  }
  if (!ok) {
    char msg[512];
    ck_ssl_message(msg, sizeof msg, "cannot read the public key");
    return luaL_error(L, "connkit: %s", msg);
  }
  lua_pushboolean(L, k->priv);
  lua_pushinteger(L, EVP_PKEY_get_bits(k->pk));
  return 6;
}

/* Pushes the PEM text of k's public key (SPKI) or, when private, of its
 * private key (unencrypted PKCS #8). The scratch userdata is made before the
 * BIO so a Lua error cannot leak it, and is cleansed after the push; the
 * private BIO is secure memory, cleansed when freed. */
static int push_pem(lua_State *L, ck_pkey *k, int private) {
  /* the PEM of any key is under 12 bytes per byte of its signature size */
  size_t cap = (size_t)EVP_PKEY_get_size(k->pk) * 12 + 1024;
  char *scratch = (char *)lua_newuserdatauv(L, cap, 0), *data = NULL;
  BIO *bio = BIO_new(private ? BIO_s_secmem() : BIO_s_mem());
  long len = -1;
  int ok =
      bio != NULL &&
      (private ? PEM_write_bio_PrivateKey(bio, k->pk, NULL, NULL, 0, NULL, NULL)
               : PEM_write_bio_PUBKEY(bio, k->pk)) == 1;
  if (ok) len = BIO_get_mem_data(bio, &data);
  ok = ok && len > 0 && (size_t)len <= cap;
  if (ok) memcpy(scratch, data, (size_t)len);
  BIO_free(bio);
  if (!ok) {
    char msg[512];
    ck_ssl_message(msg, sizeof msg, "cannot write the key as PEM");
    return luaL_error(L, "connkit: %s", msg);
  }
  lua_pushlstring(L, scratch, (size_t)len);
  ck_cleanse(scratch, cap);
  return 1;
}

/* pkey:public_pem() -> "-----BEGIN PUBLIC KEY-----..." */
static int pkey_public_pem(lua_State *L) {
  return push_pem(L, check_pkey(L, 1), 0);
}

/* pkey:private_pem() -> unencrypted PKCS #8 PEM text of a private key, for
 * a store that encrypts it (DPoP keys); the Lua string is the caller's to
 * keep safe. */
static int pkey_private_pem(lua_State *L) {
  ck_pkey *k = check_pkey(L, 1);
  if (!k->priv)
    return luaL_error(L, "connkit: a public key has no private PEM");
  return push_pem(L, k, 1);
}

static int pkey__gc(lua_State *L) {
  ck_pkey *k = (ck_pkey *)luaL_checkudata(L, 1, PKEY_CLASS);
  EVP_PKEY_free(k->pk); /* cleanses the private parts */
  k->pk = NULL;
  return 0;
}

/* Never shows key material: the type and whether it is private. */
static int pkey__tostring(lua_State *L) {
  ck_pkey *k = (ck_pkey *)luaL_checkudata(L, 1, PKEY_CLASS);
  const char *kty = k->pk ? key_kty(k->pk) : NULL;
  lua_pushfstring(L, "connkit.pkey (%s %s)", kty ? kty : "empty",
                  k->priv ? "private" : "public");
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Sign and verify                                                           */

/* Sets up md for signing (sign = 1) or verifying with pk under alg. */
static int digest_init(EVP_MD_CTX *md, enum alg a, EVP_PKEY *pk, int sign) {
  EVP_PKEY_CTX *pctx = NULL;
  const EVP_MD *hash = a == ALG_EDDSA ? NULL : EVP_sha256();
  int ok = sign ? EVP_DigestSignInit(md, &pctx, hash, NULL, pk)
                : EVP_DigestVerifyInit(md, &pctx, hash, NULL, pk);
  if (ok != 1) return 0;
  if (a == ALG_PS256) /* RFC 7518 3.5: MGF1 with SHA-256, salt = 32 bytes */
    return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) ==
               1 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1;
  if (a == ALG_RS256)
    return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1;
  return 1;
}

/* HMAC-SHA-256 of input under the secret at argument 2 into md. */
static int hs256(lua_State *L, const char *in, size_t n,
                 unsigned char md[EVP_MAX_MD_SIZE], unsigned int *len) {
  size_t kn;
  const char *key = luaL_checklstring(L, 2, &kn);
  luaL_argcheck(L, kn > 0 && kn <= 0x7fffffff, 2, "HS256 needs a secret");
  return HMAC(EVP_sha256(), key, (int)kn, (const unsigned char *)in, n, md,
              len) != NULL;
}

/* jws_sign(alg, key, input) -> signature in the JWS form (ES256: r || s). */
static int jws_sign(lua_State *L) {
  enum alg a = check_alg(L, 1);
  size_t n, len;
  const char *in = luaL_checklstring(L, 3, &n);
  ck_pkey *k;
  const char *why;
  unsigned char *sig;
  EVP_MD_CTX *md;
  int ok;
  luaL_argcheck(L, n <= JWS_INPUT_MAX, 3, "signing input too large");
  if (a == ALG_HS256) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mlen = 0;
    if (!hs256(L, in, n, mac, &mlen)) return ssl_fail(L, "key", "HS256 failed");
    lua_pushlstring(L, (const char *)mac, mlen);
    return 1;
  }
  k = check_pkey(L, 2);
  if ((why = alg_key_mismatch(a, k->pk)) != NULL)
    return ck_fail(L, "key", "%s %s", lua_tostring(L, 1), why);
  if (!k->priv)
    return ck_fail(L, "key", "a public key cannot sign: give the private key");
  len = (size_t)EVP_PKEY_get_size(k->pk);
  sig = (unsigned char *)lua_newuserdatauv(L, len + 1, 0);
  md = EVP_MD_CTX_new();
  ok = md != NULL && digest_init(md, a, k->pk, 1) &&
       EVP_DigestSign(md, sig, &len, (const unsigned char *)in, n) == 1;
  EVP_MD_CTX_free(md);
  if (!ok) return ssl_fail(L, "key", "signing failed");
  if (a == ALG_ES256) {
    unsigned char raw[2 * P256_LEN];
    if (!ecdsa_der_to_raw(sig, len, raw))
      return ssl_fail(L, "key", "cannot convert the ECDSA signature");
    lua_pushlstring(L, (const char *)raw, sizeof raw);
  } else {
    lua_pushlstring(L, (const char *)sig, len);
  }
  return 1;
}

/* jws_verify(alg, key, input, signature) -> boolean; nil, "key", message
 * when the key cannot be used with alg. A malformed signature is false. */
static int jws_verify(lua_State *L) {
  enum alg a = check_alg(L, 1);
  size_t n, sn;
  const char *in = luaL_checklstring(L, 3, &n);
  const unsigned char *sig =
      (const unsigned char *)luaL_checklstring(L, 4, &sn);
  unsigned char *der = NULL;
  ck_pkey *k;
  const char *why;
  EVP_MD_CTX *md;
  int ok;
  luaL_argcheck(L, n <= JWS_INPUT_MAX, 3, "signing input too large");
  if (a == ALG_HS256) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mlen = 0;
    if (lua_type(L, 2) != LUA_TSTRING)
      return ck_fail(L, "key", "HS256 needs a secret, not a public key");
    if (!hs256(L, in, n, mac, &mlen)) return ssl_fail(L, "key", "HS256 failed");
    lua_pushboolean(L, sn == mlen && CRYPTO_memcmp(mac, sig, mlen) == 0);
    return 1;
  }
  k = check_pkey(L, 2);
  if ((why = alg_key_mismatch(a, k->pk)) != NULL)
    return ck_fail(L, "key", "%s %s", lua_tostring(L, 1), why);
  if (a == ALG_ES256) {
    int dn;
    if (sn != 2 * P256_LEN) {
      lua_pushboolean(L, 0);
      return 1;
    }
    dn = ecdsa_raw_to_der(sig, &der);
    if (dn == 0) return ssl_fail(L, "key", "cannot encode the signature");
    sig = der;
    sn = (size_t)dn;
  }
  md = EVP_MD_CTX_new();
  ok = md != NULL && digest_init(md, a, k->pk, 0) &&
       EVP_DigestVerify(md, sig, sn, (const unsigned char *)in, n) == 1;
  EVP_MD_CTX_free(md);
  OPENSSL_free(der);
  ERR_clear_error(); /* a bad signature leaves reasons behind */
  lua_pushboolean(L, ok);
  return 1;
}

/* Adds the JWS functions to the module table on top of the stack. */
void jws_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"pkey_load", jws_pkey_load},
      {"pkey_from_jwk", jws_pkey_from_jwk},
      {"pkey_generate", jws_pkey_generate},
      {"jws_sign", jws_sign},
      {"jws_verify", jws_verify},
      {"ecdsa_der_to_raw", jws_ecdsa_der_to_raw},
      {"ecdsa_raw_to_der", jws_ecdsa_raw_to_der},
      {NULL, NULL},
  };
  static const luaL_Reg methods[] = {
      {"params", pkey_params},
      {"public_pem", pkey_public_pem},
      {"private_pem", pkey_private_pem},
      {NULL, NULL},
  };
  static const luaL_Reg metamethods[] = {
      {"__gc", pkey__gc},
      {"__tostring", pkey__tostring},
      {NULL, NULL},
  };
  compat_newclass(L, PKEY_CLASS, methods, metamethods);
  luaL_setfuncs(L, funcs, 0);
}
