/*
 * http_baseline: the plain libcurl side of the HTTP benchmark.
 *
 * Makes COUNT sequential GETs of URL with ONE reused easy handle, sending the
 * same request as the connkit side (Authorization: Bearer TOKEN, X-Region:
 * REGION, and connkit's default Accept-Encoding line, with libcurl set to
 * decode: accept_encoding.h), collecting each body into a buffer and reading
 * the status, as any careful C client would. One untimed warm-up request opens the connection.
 *
 *   http_baseline URL COUNT TOKEN REGION
 *   -> requests=COUNT failures=F seconds=S cpu=S (timed part: wall, CPU)
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accept_encoding.h"

struct body {
  char *data;
  size_t len, cap;
};

/* Appends a chunk of the reply body to the buffer. */
static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
  struct body *b = userdata;
  size_t n = size * nmemb;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n)
      cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return 0;
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, ptr, n);
  b->len += n;
  return n;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One GET on the reused handle; returns 1 when it got a 200 with a body. */
static int get_once(CURL *h, struct body *b) {
  long status = 0;
  b->len = 0;
  if (curl_easy_perform(h) != CURLE_OK) return 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  return status == 200 && b->len > 0;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s URL COUNT TOKEN REGION\n", argv[0]);
    return 2;
  }
  const char *url = argv[1];
  long count = strtol(argv[2], NULL, 10);
  char auth[512], region[256];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", argv[3]);
  snprintf(region, sizeof region, "X-Region: %s", argv[4]);

  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURL *h = curl_easy_init();
  struct curl_slist *headers = NULL;
  headers = curl_slist_append(headers, auth);
  headers = curl_slist_append(headers, region);
  headers = with_accept_encoding(headers);
  struct body b = {NULL, 0, 0};

  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, ""); /* decode, as connkit */

  long failures = 0;
  if (!get_once(h, &b)) {
    fprintf(stderr, "http_baseline: warm-up request to %s failed\n", url);
    return 1;
  }
  double t0 = now();
  clock_t c0 = clock();
  for (long i = 0; i < count; i++)
    if (!get_once(h, &b)) failures++;
  double secs = now() - t0;
  double cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;

  printf("requests=%ld failures=%ld seconds=%.6f cpu=%.6f\n", count, failures,
         secs, cpu);
  curl_slist_free_all(headers);
  curl_easy_cleanup(h);
  free(b.data);
  curl_global_cleanup();
  return failures ? 1 : 0;
}
