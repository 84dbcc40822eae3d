/*
 * multi_baseline: the plain libcurl side of the concurrent benchmark.
 *
 * Makes COUNT GETs of URL through one curl multi handle with CONCURRENCY
 * transfers in flight, each on a reused easy handle that is put back into the
 * multi handle as soon as its transfer completes. The same request as the
 * connkit side (Authorization: Bearer TOKEN, X-Region: REGION, and connkit's
 * default Accept-Encoding line, with libcurl set to decode:
 * accept_encoding.h); bodies are collected and statuses checked. An untimed
 * warm-up round of CONCURRENCY requests opens the connections first. Then
 * two timed rounds of COUNT, as bench/multi.lua runs them: the first in a
 * fresh process, the second in steady state.
 *
 *   multi_baseline URL COUNT CONCURRENCY TOKEN REGION [ROUNDS]
 *   -> requests=COUNT failures=F seconds=S cpu=S first_seconds=S
 *      faults=N first_faults=N maxrss=KB
 *      (seconds, cpu, faults: the second round; first_*: the first;
 *      faults: minor page faults, getrusage ru_minflt; maxrss: peak
 *      resident kB, ru_maxrss)
 * ROUNDS = 1 (the instruction counts of bench/http.sh): the warm-up and one
 * round of COUNT only, its figures printed as both rounds'.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "accept_encoding.h"

struct slot {
  CURL *h;
  char *data;
  size_t len, cap;
};

/* Appends a chunk of the reply body to the slot's buffer. */
static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
  struct slot *s = userdata;
  size_t n = size * nmemb;
  if (s->len + n > s->cap) {
    size_t cap = s->cap ? s->cap : 1024;
    while (cap < s->len + n)
      cap *= 2;
    char *p = realloc(s->data, cap);
    if (!p) return 0;
    s->data = p;
    s->cap = cap;
  }
  memcpy(s->data + s->len, ptr, n);
  s->len += n;
  return n;
}

static long minflt(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs `count` transfers with at most `nslots` in flight; returns failures. */
static long run(CURLM *m, struct slot *slots, long nslots, long count) {
  long started = 0, finished = 0, failures = 0;
  for (long i = 0; i < nslots && started < count; i++, started++) {
    slots[i].len = 0;
    curl_multi_add_handle(m, slots[i].h);
  }
  while (finished < count) {
    int running = 0, left = 0;
    if (curl_multi_perform(m, &running) != CURLM_OK)
      return count - finished + failures;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(m, &left))) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL *h = msg->easy_handle;
      CURLcode rc = msg->data.result;
      char *priv = NULL;
      long status = 0;
      curl_easy_getinfo(h, CURLINFO_PRIVATE, &priv);
      struct slot *s = (struct slot *)(void *)priv;
      curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
      if (rc != CURLE_OK || status != 200 || s->len == 0) failures++;
      finished++;
      curl_multi_remove_handle(m, h);
      if (started < count) {
        s->len = 0;
        curl_multi_add_handle(m, h);
        started++;
        running++;
      }
    }
    if (finished < count && running) curl_multi_poll(m, NULL, 0, 1000, NULL);
  }
  return failures;
}

int main(int argc, char **argv) {
  if (argc != 6 && argc != 7) {
    fprintf(stderr, "usage: %s URL COUNT CONCURRENCY TOKEN REGION [1|2]\n",
            argv[0]);
    return 2;
  }
  const char *url = argv[1];
  long count = strtol(argv[2], NULL, 10);
  long nslots = strtol(argv[3], NULL, 10);
  long rounds = argc == 7 ? strtol(argv[6], NULL, 10) : 2;
  if (count < 1 || nslots < 1 || rounds < 1 || rounds > 2) return 2;
  char auth[512], region[256];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", argv[4]);
  snprintf(region, sizeof region, "X-Region: %s", argv[5]);

  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURLM *m = curl_multi_init();
  struct curl_slist *headers = NULL;
  headers = curl_slist_append(headers, auth);
  headers = curl_slist_append(headers, region);
  headers = with_accept_encoding(headers);
  struct slot *slots = calloc((size_t)nslots, sizeof *slots);
  if (!slots) return 1;
  for (long i = 0; i < nslots; i++) {
    CURL *h = curl_easy_init();
    slots[i].h = h;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &slots[i]);
    curl_easy_setopt(h, CURLOPT_PRIVATE, (char *)&slots[i]);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, ""); /* decode, as connkit */
  }

  if (run(m, slots, nslots, nslots) != 0) {
    fprintf(stderr, "multi_baseline: warm-up requests to %s failed\n", url);
    return 1;
  }
  long f0 = minflt();
  double t0 = now();
  clock_t c0 = clock();
  long failures = run(m, slots, nslots, count);
  double first = now() - t0;
  double secs = first;
  long first_faults = minflt() - f0, faults = first_faults;
  if (rounds == 2) {
    f0 = minflt();
    t0 = now();
    c0 = clock();
    failures += run(m, slots, nslots, count);
    secs = now() - t0;
    faults = minflt() - f0;
  }
  double cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);

  printf("requests=%ld failures=%ld seconds=%.6f cpu=%.6f first_seconds=%.6f "
         "faults=%ld first_faults=%ld maxrss=%ld\n",
         count, failures, secs, cpu, first, faults, first_faults, ru.ru_maxrss);
  for (long i = 0; i < nslots; i++) {
    curl_easy_cleanup(slots[i].h);
    free(slots[i].data);
  }
  free(slots);
  curl_slist_free_all(headers);
  curl_multi_cleanup(m);
  curl_global_cleanup();
  return failures ? 1 : 0;
}
