/*
 * tls_client.h - client certificates for mutual TLS (tls_client.c), as the
 * transfer engine (http_spec.c, http.c) uses them.
 */
#ifndef CONNKIT_TLS_CLIENT_H
#define CONNKIT_TLS_CLIENT_H

#include <stddef.h>

#include "connkit.h"

#define TLS_CLIENT_MT "connkit.tls.client"

/* An account's client certificate: file names and the key's password
 * (NULL when none; cleansed when the object is collected). */
typedef struct tls_client {
  char *cert_file, *key_file, *password;
  size_t password_len;
  int checked;   /* the files were read and found right once */
  char why[400]; /* what tls_client_ready found wrong */
} tls_client;

/* The client at index i, or NULL when it is not one. */
CK_HIDDEN tls_client *tls_client_test(lua_State *L, int i);

/* Checks the files once (the first transfer that presents the
 * certificate): NULL when they are right, or what is wrong ("tls.<field>:
 * ..."; a failure is not remembered, the next transfer checks again).
 * libcurl keys its connection pool by the certificate file only, so every
 * account that presents a certificate over a pooled connection has shown
 * it holds the matching key and its password. */
CK_HIDDEN const char *tls_client_ready(tls_client *c);

/* Writes into buf why libcurl could not use the client certificate
 * ("tls.<field>: ..."), from a check of the files; leaves buf as it is
 * (libcurl's message) when the files look right. */
CK_HIDDEN void tls_client_explain(const tls_client *c, char *buf, size_t size);

#endif /* CONNKIT_TLS_CLIENT_H */
