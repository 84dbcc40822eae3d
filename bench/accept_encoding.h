/*
 * accept_encoding.h: the Accept-Encoding line the C baselines send, the one
 * connkit sends by default (its `decompress`): every encoding this libcurl
 * decodes, in libcurl's order. The baselines put it in their header list and
 * set CURLOPT_ACCEPT_ENCODING "" so that libcurl decodes what comes back, as
 * connkit does: a program that only set CURLOPT_ACCEPT_ENCODING would have
 * libcurl format the line again for every transfer (about 9,800 instructions
 * a request here), work the leanest client avoids.
 */
#ifndef BENCH_ACCEPT_ENCODING_H
#define BENCH_ACCEPT_ENCODING_H

#include <curl/curl.h>
#include <stdio.h>

/* Appends the line to headers (nothing when this libcurl decodes nothing);
 * returns the list. */
static struct curl_slist *with_accept_encoding(struct curl_slist *headers) {
  int f = curl_version_info(CURLVERSION_NOW)->features;
  char line[128];
  if (!(f & CURL_VERSION_LIBZ)) return headers;
  snprintf(line, sizeof line, "Accept-Encoding: deflate, gzip%s%s",
           (f & CURL_VERSION_BROTLI) ? ", br" : "", (f & CURL_VERSION_ZSTD) ? ", zstd" : "");
  return curl_slist_append(headers, line);
}

#endif
