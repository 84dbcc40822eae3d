/*
 * tls_client.c - client certificates for mutual TLS (RFC 8705): the
 * certificate and key an account presents.
 *
 *   core.tls_client(cert_file, key_file [, key_password]) -> client
 *   client:load([pem]) -> fingerprint [, cert_pem, key_pem]
 *                         | nil, "client_cert", message
 *   tostring(client): the file names, never the password
 *
 * The curl transport hands the file names and the password to libcurl
 * (http.c); when libcurl cannot use them (CURLE_SSL_CERTPROBLEM),
 * tls_client_explain() reads the files again and says which field is wrong.
 * The ngx transport's cosockets take a parsed certificate and key:
 * load(true) gives the certificate chain and the key as PEM text, the key
 * decrypted (OpenSSL, in memory). fingerprint: SHA-256 of the certificate,
 * hex; it keys connection pools.
 *
 * Messages name the field ("tls.key_password: ...") and the files, never
 * the password or the key. OpenSSL never prompts on a terminal: every read
 * has a password callback. Buffers that held the key or the password are
 * cleansed before they are freed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tls_client.h"

#define LOADED_MT "connkit.tls.loaded"
#define MAX_FILE (1024 * 1024) /* a certificate chain or a key: far less */

tls_client *tls_client_test(lua_State *L, int i) {
  return (tls_client *)luaL_testudata(L, i, TLS_CLIENT_MT);
}

static char *dup_string(const char *s, size_t n) {
  char *p = (char *)malloc(n + 1);
  if (p != NULL) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

static int client_gc(lua_State *L) {
  tls_client *c = (tls_client *)luaL_checkudata(L, 1, TLS_CLIENT_MT);
  if (c->password != NULL) {
    ck_cleanse(c->password, c->password_len);
    free(c->password);
  }
  free(c->cert_file);
  free(c->key_file);
  memset(c, 0, sizeof *c);
  return 0;
}

/* core.tls_client(cert_file, key_file [, key_password]) -> client. The
 * userdata is made (and marked empty) before anything is copied, so an
 * error mid-way leaks nothing. */
static int client_new(lua_State *L) {
  size_t nc, nk, np = 0;
  const char *cert = luaL_checklstring(L, 1, &nc);
  const char *key = luaL_checklstring(L, 2, &nk);
  const char *pw = luaL_optlstring(L, 3, NULL, &np);
  tls_client *c = (tls_client *)lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, TLS_CLIENT_MT);
  if (nc == 0 || nk == 0 || strlen(cert) != nc || strlen(key) != nk)
    return luaL_error(L, "connkit.tls_client: the file names must be non-empty, without NUL");
  if (pw != NULL && (np == 0 || strlen(pw) != np))
    return luaL_error(L, "connkit.tls_client: the key password must be non-empty, without NUL");
  c->cert_file = dup_string(cert, nc);
  c->key_file = dup_string(key, nk);
  if (pw != NULL) {
    c->password = dup_string(pw, np);
    c->password_len = np;
  }
  if (c->cert_file == NULL || c->key_file == NULL || (pw != NULL && c->password == NULL))
    return luaL_error(L, "connkit.tls_client: out of memory");
  return 1;
}

static int client_tostring(lua_State *L) {
  tls_client *c = (tls_client *)luaL_checkudata(L, 1, TLS_CLIENT_MT);
  lua_pushfstring(L, "connkit.tls.client (cert %s, key %s%s)",
                  c->cert_file ? c->cert_file : "?", c->key_file ? c->key_file : "?",
                  c->password ? ", with a password" : "");
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Reading and checking the files                                            */

typedef struct {
  const tls_client *c;
  int asked; /* OpenSSL asked for a password: the key is encrypted */
} password_ask;

static int give_password(char *buf, int size, int rwflag, void *u) {
  password_ask *a = (password_ask *)u;
  (void)rwflag;
  a->asked = 1;
  if (a->c->password == NULL || size < 0 || a->c->password_len > (size_t)size) return 0;
  memcpy(buf, a->c->password, a->c->password_len);
  return (int)a->c->password_len;
}

/* For certificates: never a password (and never OpenSSL's terminal prompt). */
static int no_password(char *buf, int size, int rwflag, void *u) {
  (void)buf;
  (void)size;
  (void)rwflag;
  (void)u;
  return 0;
}

/* The whole file in a malloc'd buffer (*len bytes), or NULL with errno. */
static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *p;
  size_t n;
  if (f == NULL) return NULL;
  p = (char *)malloc(MAX_FILE + 1);
  if (p == NULL) {
    fclose(f);
    errno = ENOMEM;
    return NULL;
  }
  n = fread(p, 1, MAX_FILE + 1, f);
  if (ferror(f) || n > MAX_FILE) {
    int e = ferror(f) ? EIO : EFBIG;
    fclose(f);
    ck_cleanse(p, n);
    free(p);
    errno = e;
    return NULL;
  }
  fclose(f);
  *len = n;
  return p;
}

static void drop_text(char *p, size_t n) {
  if (p == NULL) return;
  ck_cleanse(p, n);
  free(p);
}

/* What load() gives: PEM texts (malloc'd; the key's is cleansed when
 * freed) and the certificate's fingerprint. */
typedef struct {
  char *cert_pem, *key_pem;
  size_t cert_len, key_len;
  char fingerprint[2 * EVP_MAX_MD_SIZE + 1];
} loaded;

static void loaded_free(loaded *l) {
  drop_text(l->cert_pem, l->cert_len);
  drop_text(l->key_pem, l->key_len);
  l->cert_pem = l->key_pem = NULL;
  l->cert_len = l->key_len = 0;
}

/* A malloc'd copy of a memory BIO's contents. */
static char *bio_copy(BIO *b, size_t *len) {
  BUF_MEM *m = NULL;
  char *p;
  BIO_get_mem_ptr(b, &m);
  if (m == NULL) return NULL;
  p = (char *)malloc(m->length + 1);
  if (p == NULL) return NULL;
  memcpy(p, m->data, m->length);
  p[m->length] = '\0';
  *len = m->length;
  return p;
}

/* Reads and checks c's files: the certificate, the key (decrypted with the
 * password), and that they belong together. With want_pem, out gets the
 * chain and the key as PEM text. Returns 1, or 0 with "tls.<field>: why"
 * in msg. */
static int load(const tls_client *c, int want_pem, loaded *out, char *msg, size_t size) {
  char *text = NULL;
  size_t len = 0;
  BIO *in = NULL, *pem = NULL;
  X509 *cert = NULL, *more;
  EVP_PKEY *key = NULL;
  password_ask ask;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0, i;
  int ok = 0;
  ask.c = c;
  ask.asked = 0;

  text = slurp(c->cert_file, &len);
  if (text == NULL) {
    snprintf(msg, size, "tls.cert_file: cannot read %s: %s", c->cert_file, strerror(errno));
    goto done;
  }
  in = BIO_new_mem_buf(text, (int)len);
  if (in != NULL) cert = PEM_read_bio_X509(in, NULL, no_password, NULL);
  if (cert == NULL) {
    snprintf(msg, size, "tls.cert_file: %s holds no PEM certificate", c->cert_file);
    goto done;
  }
  if (X509_digest(cert, EVP_sha256(), md, &mdlen) != 1) {
    snprintf(msg, size, "tls.cert_file: cannot hash the certificate in %s", c->cert_file);
    goto done;
  }
  for (i = 0; i < mdlen; i++) snprintf(out->fingerprint + 2 * i, 3, "%02x", md[i]);
  if (want_pem) { /* the certificate and the chain after it, nothing else */
    pem = BIO_new(BIO_s_mem());
    if (pem == NULL || PEM_write_bio_X509(pem, cert) != 1) goto oom;
    while ((more = PEM_read_bio_X509(in, NULL, no_password, NULL)) != NULL) {
      int w = PEM_write_bio_X509(pem, more);
      X509_free(more);
      if (w != 1) goto oom;
    }
    out->cert_pem = bio_copy(pem, &out->cert_len);
    if (out->cert_pem == NULL) goto oom;
    BIO_free(pem);
    pem = NULL;
  }
  BIO_free(in);
  in = NULL;
  drop_text(text, len);

  text = slurp(c->key_file, &len);
  if (text == NULL) {
    snprintf(msg, size, "tls.key_file: cannot read %s: %s", c->key_file, strerror(errno));
    goto done;
  }
  in = BIO_new_mem_buf(text, (int)len);
  if (in != NULL) key = PEM_read_bio_PrivateKey(in, NULL, give_password, &ask);
  if (key == NULL) {
    if (ask.asked && c->password == NULL)
      snprintf(msg, size, "tls.key_password: the key in %s (tls.key_file) is encrypted: set tls.key_password",
               c->key_file);
    else if (ask.asked)
      snprintf(msg, size, "tls.key_password: the key in %s (tls.key_file) cannot be decrypted with it"
               " (a wrong password)", c->key_file);
    else
      snprintf(msg, size, "tls.key_file: %s holds no PEM private key OpenSSL can read", c->key_file);
    goto done;
  }
  if (X509_check_private_key(cert, key) != 1) {
    snprintf(msg, size, "tls.key_file: the key in %s does not match the certificate in %s (tls.cert_file)",
             c->key_file, c->cert_file);
    goto done;
  }
  if (want_pem) { /* secure memory: cleansed when freed, also as it grows */
    pem = BIO_new(BIO_s_secmem());
    if (pem == NULL || PEM_write_bio_PrivateKey(pem, key, NULL, NULL, 0, NULL, NULL) != 1) goto oom;
    out->key_pem = bio_copy(pem, &out->key_len);
    if (out->key_pem == NULL) goto oom;
  }
  ok = 1;
  goto done;
oom:
  snprintf(msg, size, "tls.cert_file: out of memory while reading the client certificate");
done:
  ERR_clear_error();
  BIO_free(pem);
  BIO_free(in);
  drop_text(text, len);
  X509_free(cert);
  EVP_PKEY_free(key);
  if (!ok) loaded_free(out);
  return ok;
}

void tls_client_explain(const tls_client *c, char *buf, size_t size) {
  loaded l;
  char msg[512];
  memset(&l, 0, sizeof l);
  if (!load(c, 0, &l, msg, sizeof msg)) snprintf(buf, size, "%s", msg);
  loaded_free(&l);
}

const char *tls_client_ready(tls_client *c) {
  loaded l;
  if (c->checked) return NULL;
  memset(&l, 0, sizeof l);
  c->checked = load(c, 0, &l, c->why, sizeof c->why);
  loaded_free(&l);
  return c->checked ? NULL : c->why;
}

static int loaded_gc(lua_State *L) {
  loaded_free((loaded *)luaL_checkudata(L, 1, LOADED_MT));
  return 0;
}

/* client:load([pem]) -> fingerprint [, cert_pem, key_pem]
 *                       | nil, "client_cert", message
 * What load() fills lives in a userdata pushed first, so a Lua error while
 * the strings are pushed still frees (and cleanses) it. */
static int client_load(lua_State *L) {
  tls_client *c = (tls_client *)luaL_checkudata(L, 1, TLS_CLIENT_MT);
  int want_pem = lua_toboolean(L, 2);
  char msg[512];
  loaded *l;
  if (c->cert_file == NULL) return luaL_error(L, "connkit.tls.client: not set up");
  l = (loaded *)lua_newuserdatauv(L, sizeof *l, 0);
  memset(l, 0, sizeof *l);
  luaL_setmetatable(L, LOADED_MT);
  if (!load(c, want_pem, l, msg, sizeof msg)) return ck_fail(L, "client_cert", "%s", msg);
  lua_pushstring(L, l->fingerprint);
  if (!want_pem) return 1;
  lua_pushlstring(L, l->cert_pem, l->cert_len);
  lua_pushlstring(L, l->key_pem, l->key_len);
  loaded_free(l);
  return 3;
}

void tls_client_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"load", client_load}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", client_gc}, {"__tostring", client_tostring}, {NULL, NULL}};
  static const luaL_Reg loaded_meta[] = {{"__gc", loaded_gc}, {NULL, NULL}};
  compat_newclass(L, TLS_CLIENT_MT, methods, meta);
  compat_newclass(L, LOADED_MT, NULL, loaded_meta);
  lua_pushcfunction(L, client_new);
  lua_setfield(L, -2, "tls_client");
}
